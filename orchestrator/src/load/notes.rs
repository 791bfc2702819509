//! Lines for the operator from library code (images built, containers started, suites run,
//! warnings) go to an [`Observer`] as [`Event::Note`], not straight to stderr: the binary
//! installs one that prints them, tests and embedders install their own or none (then the
//! lines are dropped). Use the [`note!`](crate::note) macro.

use std::sync::{Arc, RwLock};

use super::{Event, Observer};

static OBSERVER: RwLock<Option<Arc<dyn Observer>>> = RwLock::new(None);

/// Makes `o` the receiver of every note from now on; returns the previous one.
pub fn install(o: Option<Arc<dyn Observer>>) -> Option<Arc<dyn Observer>> {
    let mut slot = OBSERVER.write().unwrap_or_else(|e| e.into_inner());
    std::mem::replace(&mut *slot, o)
}

/// Sends one line to the installed observer, if any.
pub fn note(text: String) {
    let slot = OBSERVER.read().unwrap_or_else(|e| e.into_inner());
    if let Some(o) = slot.as_ref() {
        o.on_event(&Event::Note { text });
    }
}

/// Prints notes to stderr, one per line: what the `orchestrator` binary installs.
pub struct Stderr;

impl Observer for Stderr {
    fn on_event(&self, event: &Event) {
        if let Event::Note { text } = event {
            eprintln!("{text}");
        }
    }
}

/// `note!("target {t}: ready")`: a line for the operator (see the module).
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::load::notes::note(format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    struct Keep(Mutex<Vec<String>>);

    impl Observer for Keep {
        fn on_event(&self, event: &Event) {
            if let Event::Note { text } = event {
                self.0.lock().unwrap().push(text.clone());
            }
        }
    }

    #[test]
    fn notes_reach_the_installed_observer_and_nothing_else() {
        let keep = Arc::new(Keep(Mutex::new(Vec::new())));
        let before = install(Some(keep.clone()));
        crate::note!("target {}: ready", "gateway");
        install(None);
        crate::note!("dropped");
        install(before);
        assert_eq!(*keep.0.lock().unwrap(), ["target gateway: ready"]);
    }
}
