//! IndexedDB as futures: open a database, await a request, await a
//! transaction's commit. Only what the vault needs, typed, so no other
//! module handles IndexedDB's callbacks.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{DomException, Event, IdbDatabase, IdbOpenDbRequest, IdbRequest, IdbTransaction};

/// Why IndexedDB did not do what was asked.
#[derive(Debug, Clone, PartialEq)]
pub enum IdbError {
    /// The site's storage quota (or the disk) is full.
    QuotaExceeded,
    /// Anything else (IndexedDB missing or blocked, an aborted transaction),
    /// with the browser's name for it.
    Failed(String),
}

impl IdbError {
    fn from_exception(e: Option<DomException>, what: &str) -> IdbError {
        match e.map(|e| (e.name(), e.message())) {
            Some((name, _)) if name == "QuotaExceededError" => IdbError::QuotaExceeded,
            Some((name, message)) => IdbError::Failed(format!("{what}: {name} {message}")),
            None => IdbError::Failed(what.to_string()),
        }
    }

    /// A synchronous throw from an IndexedDB call.
    pub fn thrown(e: JsValue, what: &str) -> IdbError {
        IdbError::from_exception(e.dyn_into::<DomException>().ok(), what)
    }
}

/// A one-shot answer shared by the callbacks that may give it.
type Answer<T> = Rc<RefCell<Option<oneshot::Sender<T>>>>;

fn answer_with<T: 'static>(answer: &Answer<T>, f: impl Fn() -> T + 'static) -> Closure<dyn FnMut(Event)> {
    let answer = answer.clone();
    Closure::<dyn FnMut(Event)>::new(move |_| {
        if let Some(tx) = answer.borrow_mut().take() {
            let _ = tx.send(f());
        }
    })
}

/// Opens (and on first use creates) database `name` at `version`;
/// `upgrade` creates its object stores.
pub async fn open(name: &str, version: u32, upgrade: fn(&IdbDatabase)) -> Result<IdbDatabase, IdbError> {
    let factory = web_sys::window()
        .and_then(|w| w.indexed_db().ok().flatten())
        .ok_or_else(|| IdbError::Failed("this browser has no IndexedDB here".into()))?;
    let request: IdbOpenDbRequest = factory.open_with_u32(name, version).map_err(|e| IdbError::thrown(e, "open"))?;
    let on_upgrade = {
        let request = request.clone();
        Closure::<dyn FnMut(Event)>::new(move |_| {
            if let Ok(db) = request.result() {
                upgrade(db.unchecked_ref());
            }
        })
    };
    request.set_onupgradeneeded(Some(on_upgrade.as_ref().unchecked_ref()));
    let result = self::request(&request).await;
    request.set_onupgradeneeded(None);
    Ok(result?.unchecked_into())
}

/// Waits for `request` and returns its result.
pub async fn request(request: &IdbRequest) -> Result<JsValue, IdbError> {
    let (tx, rx) = oneshot::channel();
    let answer: Answer<Result<JsValue, IdbError>> = Rc::new(RefCell::new(Some(tx)));
    let on_success = {
        let r = request.clone();
        answer_with(&answer, move || r.result().map_err(|e| IdbError::thrown(e, "read")))
    };
    let on_error = {
        let r = request.clone();
        answer_with(&answer, move || Err(IdbError::from_exception(r.error().ok().flatten(), "request")))
    };
    request.set_onsuccess(Some(on_success.as_ref().unchecked_ref()));
    request.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let result = rx.await.unwrap_or_else(|_| Err(IdbError::Failed("request dropped".into())));
    // No callback may run once its closure is gone.
    request.set_onsuccess(None);
    request.set_onerror(None);
    result
}

/// Waits until `transaction` committed (its writes are on disk as far as
/// the browser promises), or reports why it was aborted.
pub async fn committed(transaction: &IdbTransaction) -> Result<(), IdbError> {
    let (tx, rx) = oneshot::channel();
    let answer: Answer<Result<(), IdbError>> = Rc::new(RefCell::new(Some(tx)));
    let on_complete = answer_with(&answer, || Ok(()));
    let on_abort = {
        let t = transaction.clone();
        answer_with(&answer, move || Err(IdbError::from_exception(t.error(), "transaction aborted")))
    };
    transaction.set_oncomplete(Some(on_complete.as_ref().unchecked_ref()));
    transaction.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
    let result = rx.await.unwrap_or_else(|_| Err(IdbError::Failed("transaction dropped".into())));
    transaction.set_oncomplete(None);
    transaction.set_onabort(None);
    result
}
