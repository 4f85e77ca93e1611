//! `manifest.json` as read from a store: parsing and validation never
//! panic, and a manifest that validates survives a publish (serialise and
//! read back) unchanged.

#![no_main]

use kinema_core::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::from_json(data) else {
        return;
    };
    let published = manifest.to_json().expect("a valid manifest serialises");
    let read_back = Manifest::from_json(&published).expect("a published manifest reads back");
    assert_eq!(read_back, manifest);
    assert_eq!(read_back.to_json().unwrap(), published);
    for file in &manifest.files {
        let etag = file.etag();
        assert!(etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'));
        assert_eq!(manifest.file(&file.path), Some(file));
    }
});
