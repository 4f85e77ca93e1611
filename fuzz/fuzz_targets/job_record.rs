//! An ingest job record as loaded after a restart: parsing never panics,
//! and a record that loads is written back to bytes that load to the same.

#![no_main]

use kinema_media::jobs::reserialize_job_record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(written) = reserialize_job_record(data) else {
        return;
    };
    assert_eq!(
        reserialize_job_record(&written).as_deref(),
        Some(written.as_slice()),
        "a written job record does not load back to itself"
    );
});
