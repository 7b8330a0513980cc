//! Recording: the microphone and MediaRecorder ([`capture`]), the chunk queue
//! that keeps audio until the server has it ([`queue`]), and the studio that
//! streams a take over the socket and resumes after a dropped connection
//! ([`studio`]).

pub mod queue;

#[cfg(target_arch = "wasm32")]
pub mod capture;
#[cfg(target_arch = "wasm32")]
pub mod studio;
