//! The embedded backend's files: one JSON file per job, written
//! atomically (temporary file, fsync, rename, directory fsync) and read
//! back in enqueue order, skipping what a crash left half-written.

use std::path::Path;

use super::{JobRecord, backend};
use crate::QueueError;

pub(super) fn write(dir: &Path, record: &JobRecord) -> Result<(), QueueError> {
    use std::io::Write;
    let path = dir.join(format!("{}.json", record.id));
    let tmp = dir.join(format!(".{}.json.tmp", record.id));
    let json = serde_json::to_vec(record).map_err(|e| backend(&path, e))?;
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(&json)?;
        file.sync_all()
    });
    if let Err(error) = written {
        // A write cut short (a full disk) must not keep the space it took.
        let _ = std::fs::remove_file(&tmp);
        return Err(backend(&tmp, error));
    }
    std::fs::rename(&tmp, &path).map_err(|e| backend(&path, e))?;
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| backend(dir, e))
}

pub(super) fn load(dir: &Path) -> Result<Vec<JobRecord>, QueueError> {
    std::fs::create_dir_all(dir).map_err(|e| backend(dir, e))?;
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| backend(dir, e))? {
        let entry = entry.map_err(|e| backend(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            // A temporary file of a write a crash interrupted.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| backend(&entry.path(), e))?;
        match serde_json::from_slice::<JobRecord>(&bytes) {
            Ok(record) => records.push(record),
            Err(error) => {
                tracing::warn!(file = %entry.path().display(), %error, "skipping an unreadable queue record");
            }
        }
    }
    records.sort_by_key(|record| record.seq);
    Ok(records)
}
