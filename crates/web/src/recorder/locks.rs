//! One page at a time per take, across tabs (the Web Locks API): the page
//! recording or uploading a take holds its lock, so another tab's recovery
//! leaves it alone; the browser releases it when that page closes or
//! crashes. Read through `Reflect`: browsers without it are told apart.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// A held lock, released when dropped.
pub struct TakeLock {
    release: Function,
}

impl Drop for TakeLock {
    fn drop(&mut self) {
        let _ = self.release.call0(&JsValue::NULL);
    }
}

/// What asking for a lock gave.
pub enum Acquired {
    Held(TakeLock),
    /// Another page holds it.
    Busy,
    /// This browser has no Web Locks.
    Unsupported,
}

fn lock_manager() -> Option<JsValue> {
    let navigator = web_sys::window()?.navigator();
    Reflect::get(&navigator, &"locks".into()).ok().filter(|l| !l.is_undefined() && !l.is_null())
}

/// Takes lock `name` if no page holds it, without waiting for it.
pub async fn try_lock(name: &str) -> Acquired {
    let Some(locks) = lock_manager() else { return Acquired::Unsupported };
    let Some(request) = Reflect::get(&locks, &"request".into()).ok().and_then(|r| r.dyn_into::<Function>().ok()) else {
        return Acquired::Unsupported;
    };
    let (tx, rx) = oneshot::channel::<Acquired>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    // Called once by the browser, with the lock or null; the lock is held
    // until the promise it returns settles, that is until TakeLock drops.
    let granted = {
        let tx = tx.clone();
        Closure::once_into_js(move |lock: JsValue| -> JsValue {
            let Some(tx) = tx.borrow_mut().take() else { return JsValue::UNDEFINED };
            if lock.is_null() || lock.is_undefined() {
                let _ = tx.send(Acquired::Busy);
                return JsValue::UNDEFINED;
            }
            let mut release = None;
            let held = Promise::new(&mut |resolve, _| release = Some(resolve));
            if let Some(release) = release {
                let _ = tx.send(Acquired::Held(TakeLock { release }));
            }
            held.into()
        })
    };
    let options = Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &true.into());
    let Ok(requested) = request.call3(&locks, &name.into(), &options, &granted) else {
        return Acquired::Unsupported;
    };
    // Refused without calling back (a page without storage access, say).
    if let Ok(requested) = requested.dyn_into::<Promise>() {
        wasm_bindgen_futures::spawn_local(async move {
            // Settles when the lock is released, or at once when refused.
            if wasm_bindgen_futures::JsFuture::from(requested).await.is_err()
                && let Some(tx) = tx.borrow_mut().take()
            {
                let _ = tx.send(Acquired::Unsupported);
            }
        });
    }
    rx.await.unwrap_or(Acquired::Busy)
}
