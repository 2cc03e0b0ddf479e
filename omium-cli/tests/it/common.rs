//! Helpers shared by the CLI test suites: run the real `omium` binary against a store in a
//! temporary directory, each run with its own `TMPDIR` that must stay empty.

#![allow(dead_code)] // each suite uses its own subset

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_omium");

/// The outcome of one `omium` run.
pub struct Out {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr: {}",
                String::from_utf8_lossy(&self.stdout),
                self.stderr
            )
        })
    }

    pub fn ok(self) -> Out {
        assert_eq!(
            self.code,
            0,
            "omium failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        assert!(self.stderr.is_empty(), "stderr: {}", self.stderr);
        self
    }

    /// Exit code 1 and nothing on stdout; returns the message after `error: `.
    pub fn failed(&self) -> String {
        assert_eq!(
            self.code,
            1,
            "expected exit code 1:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "stdout: {}",
            String::from_utf8_lossy(&self.stdout)
        );
        let msg = self
            .stderr
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("stderr does not start with `error: `: {}", self.stderr));
        assert_eq!(msg.lines().count(), 1, "one line: {msg}");
        msg.trim_end().to_string()
    }

    /// Exit code 1 and `{"error":{"code","message"}}` on stdout; returns (code, message).
    pub fn json_error(&self) -> (String, String) {
        assert_eq!(
            self.code,
            1,
            "expected exit code 1:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        assert!(self.stderr.is_empty(), "stderr: {}", self.stderr);
        let v = self.json();
        let obj = v.as_object().expect("an object");
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["error"], "{v}");
        let e = &v["error"];
        assert_eq!(keys(e), set(&["code", "message"]), "{v}");
        (
            e["code"].as_str().unwrap().to_string(),
            e["message"].as_str().unwrap().to_string(),
        )
    }
}

pub fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Every path under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// A temporary directory with a store in `store/`, a `TMPDIR` for the commands in `tmp/`.
pub struct Ctx {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub tmp: PathBuf,
}

impl Ctx {
    pub fn new() -> Ctx {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        Ctx { dir, store, tmp }
    }

    /// `omium` with nothing of the caller's environment that changes where the store is.
    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_remove("OMIUM_HOME")
            .env("TMPDIR", &self.tmp)
            .env("RUST_BACKTRACE", "0")
            .current_dir(self.dir.path());
        c
    }

    pub fn exec(&self, mut c: Command) -> Out {
        let o = c.output().expect("run omium");
        let leftovers: Vec<_> = walk(&self.tmp);
        assert!(leftovers.is_empty(), "{c:?} left {leftovers:?} in TMPDIR");
        Out {
            code: o.status.code().expect("exited, not killed"),
            stdout: o.stdout,
            stderr: String::from_utf8(o.stderr).unwrap(),
        }
    }

    /// `omium --store <store> args...`
    pub fn run(&self, args: &[&str]) -> Out {
        let mut c = self.command();
        c.arg("--store").arg(&self.store).args(args);
        self.exec(c)
    }

    /// `omium --store <store> --json args...`
    pub fn json(&self, args: &[&str]) -> Out {
        let mut c = self.command();
        c.arg("--store").arg(&self.store).arg("--json").args(args);
        self.exec(c)
    }

    pub fn store_display(&self) -> String {
        self.store.display().to_string()
    }
}
