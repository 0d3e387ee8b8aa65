//! What to remove when the process is told to stop (SIGINT, SIGTERM): the one registry of
//! files and directories a running command would leave behind if it ended there.
//!
//! Writers register what they create and drop the [`Registered`] guard when it is no longer
//! theirs to clean: a blob's or `index.json`'s `.tmp-*` file ([`crate::new_temp_in`]), an output's
//! `.ocikit-tmp-*` file ([`crate::output::AtomicFile`]), a destination directory the command
//! created ([`crate::output::NewDir`]). A [`crate::WriteLock`] registers the directory it
//! holds. [`remove_all`] (called by the binary on a signal, right before it exits) removes the
//! temp files, then each new directory, but only when this process holds its writer lock or
//! can take it: never a directory another writer is using. Layouts are valid after a signal
//! anyway (`index.json` is the commit point); this makes them tidy. Partial blobs of a bundle
//! load (`.partial-*`) are not registered: the next load resumes them.
//!
//! No signal handling here: the binary decides how to catch signals and calls [`remove_all`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug)]
enum Entry {
    /// A temp file to remove.
    Temp(PathBuf),
    /// A directory this command created, to remove with what is in it.
    NewDir(PathBuf),
    /// A directory whose writer lock this process holds: (device, inode).
    Locked(u64, u64),
}

/// Run `f` on the registry, under its lock.
fn with<T>(f: impl FnOnce(&mut HashMap<u64, Entry>) -> T) -> T {
    static REGISTRY: Mutex<Option<HashMap<u64, Entry>>> = Mutex::new(None);
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Something registered for removal on a signal; dropping it takes it off the list.
#[derive(Debug)]
#[must_use = "dropping the guard deregisters at once"]
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        with(|r| r.remove(&self.0));
    }
}

fn register(e: Entry) -> Registered {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    with(|r| r.insert(id, e));
    Registered(id)
}

/// A temp file this process is writing.
pub fn temp_file(path: impl Into<PathBuf>) -> Registered {
    register(Entry::Temp(path.into()))
}

/// A directory this command created and removes if it is stopped.
pub fn new_dir(path: impl Into<PathBuf>) -> Registered {
    register(Entry::NewDir(path.into()))
}

/// The open directory `dir`, whose writer lock this process now holds.
pub fn locked(dir: &File) -> Option<Registered> {
    let st = rustix::fs::fstat(dir).ok()?;
    Some(register(Entry::Locked(st.st_dev, st.st_ino)))
}

/// Set once [`remove_all`] starts: the process is stopping.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether [`remove_all`] has started: the command is being stopped, and a failure it now
/// meets (a temp file removed under it) is not worth reporting.
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// Remove everything registered (see the module documentation). Errors are ignored: the
/// process is about to exit, and what cannot be removed is left for `gc`.
pub fn remove_all() {
    STOPPING.store(true, Ordering::SeqCst);
    // Under the lock until the process exits: nothing deregisters half-way.
    with(remove_registered);
}

fn remove_registered(reg: &mut HashMap<u64, Entry>) {
    let held: Vec<(u64, u64)> = reg
        .values()
        .filter_map(|e| match e {
            Entry::Locked(dev, ino) => Some((*dev, *ino)),
            _ => None,
        })
        .collect();
    for e in reg.values() {
        if let Entry::Temp(p) = e {
            let _ = fs::remove_file(p);
        }
    }
    for e in reg.values() {
        let Entry::NewDir(p) = e else { continue };
        let Ok(dir) = File::open(p) else { continue };
        let Ok(st) = rustix::fs::fstat(&dir) else {
            continue;
        };
        let ours = held.contains(&(st.st_dev, st.st_ino));
        let free = || {
            rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
        };
        if (ours || free()) && crate::layout::same_dir(&dir, p) {
            // The command's own threads may still be renaming a file into it, or making a
            // directory in it again: try again, and once more after they had a moment.
            for _ in 0..3 {
                if fs::remove_dir_all(p).is_ok() {
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            let _ = fs::remove_dir_all(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_paths_are_removed_and_deregistered_ones_kept() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::write(&a, b"a").expect("write");
        fs::write(&b, b"b").expect("write");
        let dir = tmp.path().join("new");
        fs::create_dir_all(dir.join("blobs")).expect("mkdir");
        let _ga = temp_file(&a);
        let gb = temp_file(&b);
        let _gd = new_dir(&dir);
        drop(gb);
        remove_all();
        assert!(!a.exists());
        assert!(b.exists(), "deregistered");
        assert!(!dir.exists());
    }

    #[test]
    fn a_new_dir_another_holder_locks_is_kept() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("held");
        fs::create_dir(&dir).expect("mkdir");
        // Another open file description holds the lock and is not registered as ours.
        let other = File::open(&dir).expect("open");
        rustix::fs::flock(&other, rustix::fs::FlockOperation::LockExclusive).expect("lock");
        let _g = new_dir(&dir);
        remove_all();
        assert!(dir.is_dir());
    }
}
