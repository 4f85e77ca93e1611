//! The steered multivariant playlist (the hand-written fixture the unit
//! tests compare the rewriter's output with) read by hls.js's own parser,
//! through `web/tests/steering.test.mjs`.

use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn hls_js_parses_the_steered_master_playlist() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("node")
        .args(["--test", "web/tests/steering.test.mjs"])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run node (install Node.js, e.g. scripts/install-deps): {error}")
        });
    assert!(
        output.status.success(),
        "node --test failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
