//! Completion scripts and teaching help texts (no root needed).
#![allow(clippy::unwrap_used)]

mod cli_support;
use cli_support::*;

#[test]
fn completions_are_non_empty() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(&["completions", shell]);
        assert!(
            out.len() > 500 && out.contains("macvnet") && out.contains("link"),
            "{shell}: {out}"
        );
    }
    let e = fail(&["completions", "tcsh"]);
    assert!(e.contains("tcsh"), "{e}");
}

#[test]
fn help_teaches_modes_and_examples() {
    let h = ok(&["link", "add", "--help"]);
    for mode in ["private", "vepa", "bridge", "passthru", "source"] {
        assert!(
            h.lines().any(|l| l.trim_start().starts_with(mode)),
            "mode {mode} not explained:\n{h}"
        );
    }
    assert!(h.contains("hairpin"), "{h}");
    for sub in [
        &["link"][..],
        &["link", "set"],
        &["ls"],
        &["netns"],
        &["addr"],
        &["route"],
        &["completions"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let h = ok(&args);
        assert!(h.contains("Examples:"), "{sub:?} has no examples:\n{h}");
    }
    assert!(ok(&["addr", "--help"]).contains("198.18."));
}
