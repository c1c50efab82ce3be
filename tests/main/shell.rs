//! Tests of what a newcomer's shell gets (issue 17): completion scripts and manual
//! pages, both made from mara's clap definitions, so they know every subcommand.

use std::path::Path;
use std::process::{Command, Stdio};

use clap::CommandFactory;
use serde_json::Value;

use crate::common::{clean_env, Out, TestRepo};

/// The subcommands `mara --help` lists.
fn subcommands() -> Vec<String> {
    mara::cli::Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect()
}

/// Every command with a page of its own: `mara`, its subcommands and theirs, as
/// their pages are named (`mara-hooks-install`).
fn page_names(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
    let name = if prefix.is_empty() {
        cmd.get_name().to_owned()
    } else {
        format!("{prefix}-{}", cmd.get_name())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() != "help" {
            page_names(sub, &name, out);
        }
    }
    out.push(name);
}

/// Whether `word` occurs in `text` as a word of its own (not inside `collect-all`
/// or `recollect`).
fn has_word(text: &str, word: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(part)
            && !text[i + word.len()..].chars().next().is_some_and(part)
    })
}

/// Runs `mara args` outside any repository: neither command needs one.
fn mara_outside(r: &TestRepo, args: &[&str]) -> Out {
    r.mara_in(args, &[], Some(&r.home))
}

/// Runs a program with the clean environment; `None` when it is not installed.
fn run_tool(r: &TestRepo, program: &str, args: &[&str]) -> Option<Out> {
    let mut cmd = Command::new(program);
    clean_env(&mut cmd, &r.home);
    let out = cmd
        .args(args)
        .current_dir(&r.home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    match out {
        Ok(o) => Some(Out::from_output(o)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("running {program}: {e}"),
    }
}

#[test]
fn completion_scripts_name_every_subcommand() {
    let r = TestRepo::new();
    let subs = subcommands();
    assert!(subs.len() > 20, "{subs:?}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = mara_outside(&r, &["completions", shell]);
        o.ok(&format!("mara completions {shell}"));
        for sub in &subs {
            assert!(
                has_word(&o.stdout, sub),
                "the {shell} script does not mention {sub}:\n{}",
                o.stdout
            );
        }
        // --json carries the same script: printing it as text changed nothing.
        let j = mara_outside(&r, &["--json", "completions", shell]);
        j.ok("mara --json completions");
        let v: Value = serde_json::from_str(&j.stdout).expect("--json prints JSON");
        assert_eq!(v["shell"], shell);
        assert_eq!(v["script"].as_str(), Some(o.stdout.as_str()), "{shell}");
    }
    let o = mara_outside(&r, &["completions", "tcsh"]);
    o.expect_code(2, "an unknown shell is a usage error");
}

/// The bash script completes as bash runs it: subcommands, then their flags.
#[test]
fn bash_completes_subcommands_and_flags() {
    let r = TestRepo::new();
    let script = r.home.join("mara.bash");
    let o = mara_outside(&r, &["completions", "bash"]);
    o.ok("mara completions bash");
    std::fs::write(&script, &o.stdout).expect("writing the script");
    let complete = |line: &str| -> Vec<String> {
        // COMP_WORDS as bash splits the line; a trailing space starts a new word.
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if line.ends_with(' ') {
            words.push("");
        }
        let cword = words.len() - 1;
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let prog = format!(
            "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; COMP_LINE='{line}'; \
             COMP_POINT=${{#COMP_LINE}}; _mara mara {} {}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            quoted.join(" "),
            quoted[cword],
            quoted[cword.saturating_sub(1)],
        );
        let o = run_tool(&r, "bash", &["--norc", "--noprofile", "-c", &prog])
            .expect("bash is installed");
        o.ok(&format!("completing {line:?}"));
        o.stdout.lines().map(str::to_owned).collect()
    };
    assert_eq!(complete("mara cl"), ["claim"]);
    let all = complete("mara ");
    for sub in subcommands() {
        assert!(all.contains(&sub), "{sub} in {all:?}");
    }
    assert!(complete("mara claim --n").contains(&"--next".to_owned()));
    assert!(complete("mara completions ").contains(&"fish".to_owned()));
}

/// Checks a roff page with groff when it is installed (Debian's groff-base is
/// part of the base image): no error, no warning.
fn groff_parses(r: &TestRepo, page: &Path) -> Option<String> {
    let page = page.to_str().expect("a UTF-8 path");
    let o = run_tool(r, "groff", &["-man", "-Tascii", "-ww", "-P-c", page])?;
    o.ok(&format!("groff {page}"));
    assert_eq!(o.stderr, "", "groff warns about {page}");
    Some(o.stdout)
}

#[test]
fn the_manual_page_names_every_subcommand_and_parses() {
    let r = TestRepo::new();
    let o = mara_outside(&r, &["man"]);
    o.ok("mara man");
    assert!(o.stdout.contains(".TH mara 1"), "{}", o.stdout);
    for sub in subcommands() {
        let roff = format!("mara\\-{}(1)", sub.replace('-', "\\-"));
        assert!(o.stdout.contains(&roff), "{roff} in\n{}", o.stdout);
    }
    let page = r.home.join("mara.1");
    std::fs::write(&page, &o.stdout).expect("writing the page");
    match groff_parses(&r, &page) {
        Some(text) => {
            for sub in subcommands() {
                assert!(text.contains(&format!("mara-{sub}(1)")), "{sub} in\n{text}");
            }
        }
        None => eprintln!("groff is not installed: the page was not parsed"),
    }
}

#[test]
fn man_dir_writes_a_page_per_command() {
    let r = TestRepo::new();
    let dir = r.home.join("man").join("man1");
    let o = mara_outside(
        &r,
        &["--json", "man", "--dir", dir.to_str().expect("UTF-8")],
    );
    o.ok("mara man --dir");
    let v: Value = serde_json::from_str(&o.stdout).expect("--json prints JSON");
    let mut expected = Vec::new();
    // Subcommands' own subcommands (`hooks install`) are built on demand.
    let mut cmd = mara::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    page_names(&cmd, "", &mut expected);
    let mut expected: Vec<String> = expected.into_iter().map(|n| format!("{n}.1")).collect();
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .expect("the folder exists")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .into_string()
                .expect("UTF-8")
        })
        .collect();
    written.sort();
    assert_eq!(written, expected);
    assert!(
        written.contains(&"mara-hooks-install.1".to_owned()),
        "{written:?}"
    );
    assert_eq!(
        v["files"].as_array().map(Vec::len),
        Some(expected.len()),
        "{v}"
    );
    for name in &written {
        let page = dir.join(name);
        let roff = std::fs::read_to_string(&page).expect("reading a page");
        let stem = name.trim_end_matches(".1");
        assert!(roff.contains(&format!(".TH {stem} 1")), "{name}:\n{roff}");
        groff_parses(&r, &page);
    }
    // `man` finds a page as a reader would.
    if let Some(o) = run_tool(
        &r,
        "man",
        &["-l", dir.join("mara-claim.1").to_str().expect("UTF-8")],
    ) {
        o.ok("man -l mara-claim.1");
        assert!(o.stdout.contains("--next"), "{}", o.stdout);
    }
}
