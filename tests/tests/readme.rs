//! The README's commands, run exactly as written: every ```sh block that the README marks with
//! `<!-- run as written by tests/tests/readme.rs ... -->` runs in bash (`-euo pipefail`) from the
//! repository's root against the local stack, and must succeed. The two top commands are checked
//! to be real `make` targets (CI runs `make test`, which runs the demo, itself).

use anyhow::{bail, Context, Result};
use perfagent_e2e::repo_root;
use std::process::Command;

const MARK: &str = "<!-- run as written by tests/tests/readme.rs";

/// The marked blocks' bodies, in order.
fn marked_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.trim_start().starts_with(MARK) {
            continue;
        }
        if lines.next().map(str::trim) != Some("```sh") {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push(body.join("\n"));
    }
    blocks
}

#[test]
fn the_readme_marks_its_runnable_blocks() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    assert!(!marked_blocks(&readme).is_empty(), "no block is marked");
}

#[test]
fn the_readmes_marked_commands_run_as_written() -> Result<()> {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    for block in marked_blocks(&readme) {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &block])
            .current_dir(&root)
            .output()
            .context("running bash")?;
        if !out.status.success() {
            bail!(
                "a README block failed ({}):\n{block}\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

#[test]
fn the_two_first_commands_are_make_targets() -> Result<()> {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    for target in ["demo", "test"] {
        assert!(
            readme.contains(&format!("make {target} ")),
            "the README no longer opens with make {target}"
        );
        let dry = Command::new("make")
            .args(["-n", target])
            .current_dir(&root)
            .output()?;
        assert!(
            dry.status.success(),
            "make -n {target}: {}",
            String::from_utf8_lossy(&dry.stderr)
        );
    }
    Ok(())
}
