//! `kinema edge --help` through the real binary: the text a new user reads
//! first says what it means. Clap reads `{n}` in a flag's help as a line
//! break, which cut the prefetch flag's `…/{n}.m4s` into `…/` and `.m4s`.

use std::process::Command;

/// The help text with its line wrapping undone: clap wraps at the
/// terminal's width, which a test does not choose.
fn edge_help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kinema"))
        .args(["edge", "--help"])
        .output()
        .expect("kinema runs");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).expect("help is UTF-8");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn edge_help_names_the_segment_url_of_the_prefetch_flag_whole() {
    let help = edge_help();
    assert!(
        help.contains("Segments after n prefetched when …/<n>.m4s is served; 0 disables"),
        "{help}"
    );
    assert!(!help.contains("…/ .m4s"), "{help}");
}
