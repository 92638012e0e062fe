//! Files of keys and tokens as a Kubernetes Secret mounts them: read at start, where a file
//! that cannot be used stops the service with its variable named, and read again while the
//! service runs, so that a rotated Secret takes effect without a restart. A new content that
//! cannot be used is logged and the last good value stays. Neither a message nor a log line
//! ever shows what a file holds.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock, Weak},
    time::Duration,
};

use subtle::ConstantTimeEq;

use crate::{config::ConfigError, periodic};

/// How often a watched file is read again: a rotated Secret reaches the pod's volume within
/// about a minute, and a read every half minute costs nothing.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(30);

/// Turns a file's bytes into the value it holds, or says why it cannot, in words that never
/// repeat what the file holds.
pub type Parse<T> = fn(&[u8]) -> Result<T, String>;

/// The value of a file named by an environment variable, kept current by [`watch`].
pub struct WatchedFile<T> {
    variable: &'static str,
    path: PathBuf,
    parse: Parse<T>,
    state: RwLock<State<T>>,
}

struct State<T> {
    value: Arc<T>,
    /// What the file held when it was last read, used or not: an unchanged file is neither
    /// parsed again nor reported again.
    seen: Vec<u8>,
    /// The last read failed; reported once until the file can be read again.
    unreadable: bool,
}

/// What [`WatchedFile::refresh`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    Unchanged,
    /// The new content is in use.
    Replaced,
    /// The file changed or could not be read; the value read before stays, for this reason.
    Kept(String),
}

impl<T> WatchedFile<T> {
    /// Reads and parses the file at `path`, the value of `variable`.
    pub fn open(
        variable: &'static str,
        path: impl Into<PathBuf>,
        parse: Parse<T>,
    ) -> Result<Self, ConfigError> {
        let path = path.into();
        let error = |reason: String| ConfigError {
            variable,
            value: path.display().to_string(),
            reason,
        };
        let content = read(&path).map_err(error)?;
        let value = parse(&content).map_err(error)?;
        Ok(Self {
            variable,
            parse,
            state: RwLock::new(State {
                value: Arc::new(value),
                seen: content,
                unreadable: false,
            }),
            path,
        })
    }

    /// The variable that names the file.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The value in use.
    pub fn current(&self) -> Arc<T> {
        self.state().value.clone()
    }

    /// Reads the file again. A content that changed and parses replaces the value; one that
    /// does not parse, or a file that cannot be read, leaves the value as it was, with a
    /// warning the first time.
    pub fn refresh(&self) -> Refresh {
        let content = match read(&self.path) {
            Ok(content) => content,
            Err(reason) => {
                let mut state = self.state_mut();
                if !state.unreadable {
                    state.unreadable = true;
                    tracing::warn!(variable = self.variable, path = %self.path.display(), %reason, "cannot read the file again; keeping what it held before");
                }
                return Refresh::Kept(reason);
            }
        };
        let mut state = self.state_mut();
        state.unreadable = false;
        // The content may be a secret: compared in constant time like any other.
        if bool::from(content.ct_eq(&state.seen)) {
            return Refresh::Unchanged;
        }
        let parsed = (self.parse)(&content);
        state.seen = content;
        match parsed {
            Ok(value) => {
                state.value = Arc::new(value);
                tracing::info!(variable = self.variable, path = %self.path.display(), "the file changed: its new content is in use");
                Refresh::Replaced
            }
            Err(reason) => {
                tracing::warn!(variable = self.variable, path = %self.path.display(), %reason, "the file changed but cannot be used; keeping what it held before");
                Refresh::Kept(reason)
            }
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State<T>> {
        // Every write leaves the state whole: a panic elsewhere cannot have broken it.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State<T>> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> std::fmt::Debug for WatchedFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedFile")
            .field("variable", &self.variable)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Reads the file's bytes; the error says why without the content.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read the file: {err}"))
}

/// Refreshes `file` every `period` until it is dropped. The first refresh is a period after
/// the start, which has just read the file.
pub async fn watch<T>(file: Weak<WatchedFile<T>>, period: Duration) {
    periodic::while_alive(file, period, |file| {
        file.refresh();
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file under the system's temp dir, removed when dropped.
    struct File(PathBuf);

    impl File {
        fn new(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!("watched-{}", uuid::Uuid::new_v4()));
            std::fs::write(&path, text).unwrap();
            Self(path)
        }

        fn write(&self, text: &str) {
            std::fs::write(&self.0, text).unwrap();
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A number on its own, or why not.
    fn number(content: &[u8]) -> Result<u32, String> {
        std::str::from_utf8(content)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| "not a number".to_owned())
    }

    #[test]
    fn a_file_that_cannot_be_read_or_parsed_at_start_is_refused_with_its_variable_named() {
        let file = File::new("forty-two");
        let err = WatchedFile::open("SOME_FILE", &file.0, number).unwrap_err();
        assert_eq!(err.variable, "SOME_FILE");
        assert_eq!(err.reason, "not a number");
        assert!(!err.to_string().contains("forty-two"), "{err}");

        drop(file);
        let missing = std::env::temp_dir().join(format!("no-such-{}", uuid::Uuid::new_v4()));
        let err = WatchedFile::open("SOME_FILE", &missing, number).unwrap_err();
        assert!(err.reason.starts_with("cannot read the file"), "{err}");
    }

    #[test]
    fn a_changed_file_replaces_the_value_and_a_broken_one_keeps_the_last_good_value() {
        let file = File::new("1\n");
        let watched = WatchedFile::open("SOME_FILE", &file.0, number).unwrap();
        assert_eq!(*watched.current(), 1);
        assert_eq!(watched.refresh(), Refresh::Unchanged);

        file.write("2\n");
        assert_eq!(watched.refresh(), Refresh::Replaced);
        assert_eq!(*watched.current(), 2);

        file.write("three");
        assert_eq!(watched.refresh(), Refresh::Kept("not a number".to_owned()));
        assert_eq!(*watched.current(), 2);
        // Reported once, not on every check.
        assert_eq!(watched.refresh(), Refresh::Unchanged);

        std::fs::remove_file(&file.0).unwrap();
        assert!(
            matches!(watched.refresh(), Refresh::Kept(reason) if reason.starts_with("cannot read"))
        );
        assert_eq!(*watched.current(), 2);

        file.write("4");
        assert_eq!(watched.refresh(), Refresh::Replaced);
        assert_eq!(*watched.current(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_reads_the_file_each_period_and_ends_with_it() {
        let file = File::new("1");
        let watched = Arc::new(WatchedFile::open("SOME_FILE", &file.0, number).unwrap());
        let watching = tokio::spawn(watch(Arc::downgrade(&watched), REFRESH_PERIOD));
        file.write("2");
        tokio::time::sleep(REFRESH_PERIOD / 2).await;
        assert_eq!(*watched.current(), 1);
        tokio::time::sleep(REFRESH_PERIOD).await;
        assert_eq!(*watched.current(), 2);

        drop(watched);
        tokio::time::sleep(REFRESH_PERIOD * 2).await;
        assert!(watching.is_finished());
    }
}
