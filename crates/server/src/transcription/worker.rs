//! One worker process: started at the lowest CPU priority (`SCHED_IDLE` on
//! Linux, `nice` 19 elsewhere), so it only gets the CPU that recording
//! leaves; spoken to over the protocol; killed when a job overruns, is
//! cancelled, or the server stops.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use audiobook_wire::TranscriptSegment;

use super::protocol::{self, MAX_LINE_BYTES, MAX_SEGMENTS, MAX_WORDS, Message, PROTOCOL_VERSION, Request};

/// How to start a worker: the command line (`TRANSCRIBER_COMMAND`), to which
/// `--model M` (when set) and `--threads N` are added.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub argv: Vec<String>,
    pub model: Option<String>,
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot start the transcription worker `{0}`: {1}")]
    Spawn(String, std::io::Error),
    #[error("the transcription worker exited ({0})")]
    Exited(String),
    #[error("the transcription worker broke the protocol: {0}")]
    Protocol(String),
    #[error("the transcription worker was not ready within {0} s")]
    StartTimeout(u64),
    #[error("cannot write to the transcription worker: {0}")]
    Write(std::io::Error),
}

/// Lines of the worker's stderr kept to explain why it died.
const STDERR_TAIL: usize = 20;

pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    messages: mpsc::Receiver<Result<Message, String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// What the worker said it runs (`ready`).
    pub model: String,
    pub engine: String,
}

impl Worker {
    /// Starts a worker and waits for its `ready` (the model is loaded).
    pub async fn start(cmd: &WorkerCommand, timeout: Duration) -> Result<Worker, WorkerError> {
        let program = cmd.argv.first().cloned().unwrap_or_default();
        let mut command = Command::new(&program);
        command
            .args(&cmd.argv[1..])
            .args(cmd.model.iter().flat_map(|m| ["--model".to_string(), m.clone()]))
            .args(["--threads".to_string(), cmd.threads.to_string()])
            .env("OMP_NUM_THREADS", cmd.threads.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        unsafe {
            // In the child, before exec: the lowest priority, so transcribing
            // never takes CPU from recording. Async-signal-safe calls only.
            command.pre_exec(|| {
                libc::setpriority(libc::PRIO_PROCESS, 0, 19);
                // Linux: run only when no other task wants the CPU; a chunk
                // being written preempts the worker at once.
                #[cfg(target_os = "linux")]
                {
                    let param = libc::sched_param { sched_priority: 0 };
                    libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| WorkerError::Spawn(cmd.argv.join(" "), e))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(forward_stderr(stderr, stderr_tail.clone(), child.id()));
        let (tx, messages) = mpsc::channel(64);
        tokio::spawn(read_messages(stdout, tx));
        let mut worker = Worker { child, stdin, messages, stderr_tail, model: String::new(), engine: String::new() };
        match tokio::time::timeout(timeout, worker.next()).await {
            Ok(Ok(Message::Ready { protocol, model, engine })) if protocol == PROTOCOL_VERSION => {
                worker.model = model;
                worker.engine = engine;
                Ok(worker)
            }
            Ok(Ok(Message::Ready { protocol, .. })) => {
                worker.kill().await;
                Err(WorkerError::Protocol(format!("protocol {protocol}, this server speaks {PROTOCOL_VERSION}")))
            }
            Ok(Ok(other)) => {
                worker.kill().await;
                Err(WorkerError::Protocol(format!("expected `ready` first, got {other:?}")))
            }
            Ok(Err(e)) => {
                worker.kill().await;
                Err(e)
            }
            Err(_) => {
                worker.kill().await;
                Err(WorkerError::StartTimeout(timeout.as_secs()))
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub async fn send(&mut self, request: &Request) -> Result<(), WorkerError> {
        let mut line = serde_json::to_vec(request).expect("requests serialize");
        line.push(b'\n');
        self.stdin.write_all(&line).await.map_err(WorkerError::Write)?;
        self.stdin.flush().await.map_err(WorkerError::Write)
    }

    /// The next message. Cancel-safe: a message is never lost when the
    /// caller stops waiting (lines are read by a task of their own).
    pub async fn next(&mut self) -> Result<Message, WorkerError> {
        match self.messages.recv().await {
            Some(Ok(message)) => Ok(message),
            Some(Err(protocol_error)) => Err(WorkerError::Protocol(protocol_error)),
            None => Err(WorkerError::Exited(self.exit_report().await)),
        }
    }

    /// The exit status and the last lines of stderr.
    async fn exit_report(&mut self) -> String {
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            _ => "still running, stdout closed".to_string(),
        };
        // Give the stderr task a moment to read the last words.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tail = self.stderr_tail.lock().expect("stderr tail");
        if tail.is_empty() {
            status
        } else {
            format!("{status}; it said: {}", tail.iter().cloned().collect::<Vec<_>>().join(" | "))
        }
    }

    /// CPU seconds (user and system) the process has used, where `/proc` says.
    pub fn cpu_secs(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (per_sec > 0).then(|| ticks / per_sec as f64)
    }

    /// Peak resident memory of the process (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    }

    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Runs one job to its end, with no other bound than `timeout` (for the
    /// protocol tests and the benchmark; the server's runner also renews
    /// claims and cancels).
    pub async fn transcribe(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Result<JobResult, JobFailure>, WorkerError> {
        let Request::Transcribe { id, .. } = request;
        let mut collector = Collector::new(id);
        self.send(request).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.next())
                .await
                .map_err(|_| WorkerError::Protocol(format!("no result within {} s", timeout.as_secs())))??;
            if let Some(end) = collector.feed(message)? {
                return Ok(end);
            }
        }
    }
}

/// Logs the worker's stderr (bounded lines) and keeps its last lines.
async fn forward_stderr(stderr: impl AsyncRead + Unpin, tail: Arc<Mutex<VecDeque<String>>>, pid: Option<u32>) {
    let mut reader = BufReader::new(stderr);
    while let Ok(Some(line)) = read_line(&mut reader, 4096).await {
        let line = protocol::clean(&String::from_utf8_lossy(&line), 500);
        if line.is_empty() {
            continue;
        }
        tracing::info!(target: "transcriber", pid, "{line}");
        let mut tail = tail.lock().expect("stderr tail");
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Parses stdout into messages; a line that is too long or not protocol
/// ends the stream with an error (the worker is then killed).
async fn read_messages(stdout: impl AsyncRead + Unpin, tx: mpsc::Sender<Result<Message, String>>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let message = match read_line(&mut reader, MAX_LINE_BYTES).await {
            Ok(Some(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(Some(line)) => protocol::parse(&line),
            Ok(None) => return,
            Err(e) => Err(e.to_string()),
        };
        let stop = message.is_err();
        if tx.send(message).await.is_err() || stop {
            return;
        }
    }
}

/// A line without its newline; `None` at the end of the stream; an error
/// for a line longer than `max` (nothing more is buffered than that).
async fn read_line(reader: &mut (impl AsyncBufReadExt + Unpin), max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() { None } else { Some(line) });
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(std::io::Error::other(format!("a line longer than {max} bytes")));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(line));
        }
    }
}

/// A finished job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobResult {
    /// The audio's length as the worker found it (0: unknown).
    pub duration_ms: u64,
    pub language: Option<String>,
    pub segments: Vec<TranscriptSegment>,
}

/// A job the worker could not do (the worker itself is fine).
#[derive(Debug, Clone, PartialEq)]
pub struct JobFailure {
    pub error: String,
    /// `false`: trying again cannot help (the audio cannot be decoded).
    pub retry: bool,
}

/// Gathers one job's messages into its result, checking each against the
/// protocol and the bounds.
#[derive(Debug)]
pub struct Collector {
    id: String,
    result: JobResult,
    words: usize,
}

impl Collector {
    pub fn new(id: &str) -> Collector {
        Collector { id: id.to_string(), result: JobResult::default(), words: 0 }
    }

    /// Where the job got to: the end of its last segment, in ms.
    pub fn reached_ms(&self) -> u64 {
        self.result.segments.last().map_or(0, |s| s.end_ms)
    }

    pub fn duration_ms(&self) -> u64 {
        self.result.duration_ms
    }

    /// Takes one message: `Some` when the job ended.
    pub fn feed(&mut self, message: Message) -> Result<Option<Result<JobResult, JobFailure>>, WorkerError> {
        let check = |id: &str| {
            if id == self.id {
                Ok(())
            } else {
                Err(WorkerError::Protocol(format!("a message for job {id:?} during job {:?}", self.id)))
            }
        };
        match message {
            Message::Started { id, duration_ms, language } => {
                check(&id)?;
                self.result.duration_ms = duration_ms;
                self.result.language = language.map(|l| protocol::clean(&l, 16)).filter(|l| !l.is_empty());
                Ok(None)
            }
            Message::Segment { id, start_ms, end_ms, text, words } => {
                check(&id)?;
                self.words += words.len();
                if self.result.segments.len() >= MAX_SEGMENTS || self.words > MAX_WORDS {
                    return Err(WorkerError::Protocol("more segments or words than any recording holds".into()));
                }
                if let Some(segment) = protocol::segment(start_ms, end_ms, &text, words) {
                    self.result.segments.push(segment);
                }
                Ok(None)
            }
            Message::Done { id } => {
                check(&id)?;
                Ok(Some(Ok(std::mem::take(&mut self.result))))
            }
            Message::Error { id, error, retry } => {
                if let Some(id) = &id {
                    check(id)?;
                }
                Ok(Some(Err(JobFailure { error: protocol::clean(&error, 500), retry })))
            }
            Message::Ready { .. } => Err(WorkerError::Protocol("`ready` in the middle of a job".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let data: &[u8] = b"short\n\nlonger line\nno newline at the end";
        let mut reader = BufReader::with_capacity(4, data);
        assert_eq!(read_line(&mut reader, 100).await.unwrap().unwrap(), b"short");
        assert_eq!(read_line(&mut reader, 100).await.unwrap().unwrap(), b"");
        assert_eq!(read_line(&mut reader, 100).await.unwrap().unwrap(), b"longer line");
        assert_eq!(read_line(&mut reader, 100).await.unwrap().unwrap(), b"no newline at the end");
        assert_eq!(read_line(&mut reader, 100).await.unwrap(), None);
        let long = vec![b'x'; 1000];
        let mut reader = BufReader::with_capacity(16, long.as_slice());
        assert!(read_line(&mut reader, 999).await.is_err());
    }

    #[tokio::test]
    async fn a_worker_that_is_not_one_is_refused() {
        let no_such = WorkerCommand { argv: vec!["/nonexistent/transcriber".into()], model: None, threads: 1 };
        assert!(matches!(Worker::start(&no_such, Duration::from_secs(5)).await, Err(WorkerError::Spawn(..))));
        // Prints something that is not the protocol.
        let echo = WorkerCommand { argv: vec!["echo".into(), "hello".into()], model: None, threads: 1 };
        let e = Worker::start(&echo, Duration::from_secs(5)).await.err().unwrap();
        assert!(matches!(e, WorkerError::Protocol(_)), "{e}");
        // Says nothing and exits.
        let quiet = WorkerCommand { argv: vec!["true".into()], model: None, threads: 1 };
        assert!(matches!(Worker::start(&quiet, Duration::from_secs(5)).await, Err(WorkerError::Exited(_))));
        // Never gets ready.
        let slow = WorkerCommand { argv: vec!["sleep".into(), "30".into()], model: None, threads: 1 };
        let started = std::time::Instant::now();
        let e = Worker::start(&slow, Duration::from_millis(300)).await.err().unwrap();
        assert!(matches!(e, WorkerError::StartTimeout(_) | WorkerError::Exited(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_collector_checks_ids_and_bounds() {
        let mut c = Collector::new("a");
        let started = Message::Started { id: "a".into(), duration_ms: 5000, language: Some("en\u{0}".into()) };
        assert!(c.feed(started).unwrap().is_none());
        let segment =
            |id: &str| Message::Segment { id: id.into(), start_ms: 0, end_ms: 900, text: "hi".into(), words: vec![] };
        assert!(c.feed(segment("a")).unwrap().is_none());
        assert_eq!(c.reached_ms(), 900);
        assert!(c.feed(segment("b")).is_err(), "another job's segment");
        let done = c.feed(Message::Done { id: "a".into() }).unwrap().unwrap().unwrap();
        assert_eq!((done.duration_ms, done.language.as_deref(), done.segments.len()), (5000, Some("en"), 1));
        let mut c = Collector::new("a");
        let failed = c.feed(Message::Error { id: None, error: "bad\naudio".into(), retry: false }).unwrap().unwrap();
        assert_eq!(failed, Err(JobFailure { error: "bad audio".into(), retry: false }));
    }
}
