//! The C example as a C user meets it: `examples/c/onboarding.c` compiled with gcc by its
//! Makefile against the libomium.a (and libomium.so) that cargo built for these tests; run,
//! killed with SIGKILL after two steps, run again (the two recorded steps are replayed, not
//! re-run, and the run completes); run against a real `omium serve` daemon; and run under
//! valgrind with no leaks and no errors.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const EXECUTION: &str = "cust-42";
const STEPS: [&str; 4] = [
    "kyc_doc_validated",
    "credit_score",
    "offer",
    "notify_customer",
];

/// Where cargo put libomium.a and libomium.so for this test run: beside the test binary
/// (`<target>/<profile>/deps`; only `cargo build` copies them one level up).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    for dir in [
        deps.clone(),
        deps.parent().expect("profile dir").to_path_buf(),
    ] {
        if dir.join("libomium.a").exists() {
            return dir;
        }
    }
    panic!(
        "no libomium.a in {} or its parent; cargo builds it with the tests of omium-ffi \
         (cargo test -p omium-ffi)",
        deps.display()
    );
}

/// A scratch directory kept for the whole test binary (the built programs live there).
/// One scratch folder per run of this test binary, in cargo's target tmp dir (a static
/// `TempDir` is never dropped, so it would leak a folder into /tmp on every run); emptied when
/// the next run starts.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("omium-ffi-c-example");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// Runs `make -C examples/c <target>` with gcc; returns the program it built.
fn make(target: &str, program: &str) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/c");
    let out = Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(&example)
        .arg(target)
        .arg("CC=gcc")
        .arg(format!("BUILD_DIR={}", scratch().display()))
        .arg(format!("OMIUM_LIB_DIR={}", lib_dir().display()))
        .output()
        .expect("run make (is it installed?)");
    assert!(
        out.status.success(),
        "building the C example failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    scratch().join(program)
}

/// The statically linked example, built once.
fn program() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| make("all", "onboarding"))
}

fn onboarding(store: &Path, step_ms: u64) -> Command {
    let mut cmd = Command::new(program());
    cmd.arg(store)
        .env("ONBOARDING_STEP_MS", step_ms.to_string())
        .env_remove("ONBOARDING_DURABILITY");
    cmd
}

/// What each step line says: (step, "ran" | "replayed", checkpoint id when it ran).
fn steps(stdout: &str) -> Vec<(String, &'static str, Option<String>)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("step "))
        .map(|rest| {
            let (name, what) = rest.split_once(' ').expect("step NAME ...");
            let what = what.trim_start();
            if what.starts_with("replayed from the journal (not re-run)") {
                (name.to_string(), "replayed", None)
            } else if what.starts_with("ran (") {
                let id = what.rsplit_once("checkpoint ").expect("its checkpoint").1;
                (name.to_string(), "ran", Some(id.to_string()))
            } else {
                panic!("unexpected step line: {rest}")
            }
        })
        .collect()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `omium` binary: `OMIUM_BIN`, else the one cargo built beside this test's profile.
fn omium_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OMIUM_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let bin = exe.parent().unwrap().parent().unwrap().join("omium");
    assert!(
        bin.exists(),
        "the omium binary is not built at {}: run `cargo build -p omium-cli` (or `make cli`), \
         or set OMIUM_BIN",
        bin.display()
    );
    bin
}

#[test]
fn the_c_program_records_into_an_omium_serve_daemon() {
    let dir = scratch().join("served");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("omium.sock");
    let mut daemon = Command::new(omium_bin())
        .arg("--store")
        .arg(dir.join("store"))
        .args(["serve", "--socket"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("\"socket\""),
        "omium serve did not start: {line:?}"
    );
    let url = format!("unix://{}", socket.display());
    let run = |id: &str| {
        let mut cmd = Command::new(program());
        cmd.arg(&url)
            .arg(id)
            .env("ONBOARDING_STEP_MS", "10")
            .env_remove("OMIUM_API_KEY");
        cmd.output().unwrap()
    };

    let out = run("served-42");
    let (first, err) = text(&out);
    assert!(out.status.success(), "{first}\n{err}");
    assert!(steps(&first).iter().all(|s| s.1 == "ran"), "{first}");
    assert!(first.contains("verify: ok"), "{first}");
    // A second process, same execution: everything is replayed from the daemon's store.
    let out = run("served-42");
    let (second, err) = text(&out);
    assert!(out.status.success(), "{second}\n{err}");
    let replayed = steps(&second);
    assert_eq!(replayed.len(), STEPS.len(), "{second}");
    assert!(replayed.iter().all(|s| s.1 == "replayed"), "{second}");

    // The daemon gone, the program says so and names the URL.
    let _ = daemon.kill();
    let _ = daemon.wait();
    let out = run("served-43");
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(
            "onboarding: connecting to omium serve failed: [server_unavailable] omium_store_connect: "
        ) && err.contains(&url),
        "{err}"
    );
}

#[test]
fn the_c_program_killed_mid_run_resumes_without_rerunning_recorded_steps() {
    let store = scratch().join("crash-store");

    // First run: slow steps; SIGKILL as soon as the second step says it was recorded, while
    // the third is "calling its LLM" (one second, so the kill lands well inside it).
    let mut child = onboarding(&store, 1000)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the C example");
    let mut first = String::new();
    let started = Instant::now();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        first.push_str(&line);
        first.push('\n');
        if line.starts_with("step credit_score ") {
            child.kill().expect("SIGKILL the C example"); // SIGKILL on Unix
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the C example is stuck:\n{first}"
        );
    }
    let status = child.wait().unwrap();
    assert!(
        status.code().is_none(),
        "killed by a signal, not exited: {status:?}\n{first}"
    );
    let ran_first = steps(&first);
    assert_eq!(
        ran_first
            .iter()
            .map(|s| (s.0.as_str(), s.1))
            .collect::<Vec<_>>(),
        [("kyc_doc_validated", "ran"), ("credit_score", "ran")],
        "{first}"
    );
    assert!(!first.contains("completed"), "{first}");

    // The killed execution is left resumable, and its two steps are on disk.
    {
        let s = omium_core::Store::open_read_only(&store).unwrap();
        let resumable: Vec<_> = s.resumable().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(resumable, [EXECUTION]);
        let names: Vec<_> = s
            .history(EXECUTION)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, &STEPS[..2]);
    }

    // Second run: the recorded steps are replayed, the rest run, the execution completes.
    let out = onboarding(&store, 50).output().unwrap();
    let (second, err) = text(&out);
    assert!(out.status.success(), "{second}\n{err}");
    let resumed = steps(&second);
    assert_eq!(
        resumed
            .iter()
            .map(|s| (s.0.as_str(), s.1))
            .collect::<Vec<_>>(),
        [
            ("kyc_doc_validated", "replayed"),
            ("credit_score", "replayed"),
            ("offer", "ran"),
            ("notify_customer", "ran"),
        ],
        "{second}"
    );
    assert!(second.contains("verify: ok"), "{second}");
    assert!(
        second.contains(&format!(
            "completed {EXECUTION}: customer > kyc_doc_validated by kyc_agent > credit_score by \
             credit_agent > offer by offer_agent > notify_customer by offer_agent"
        )),
        "the replayed states fed the later steps:\n{second}"
    );

    let s = omium_core::Store::open_read_only(&store).unwrap();
    let e = s.execution(EXECUTION).unwrap();
    assert_eq!(e.status, omium_core::Status::Completed);
    assert_eq!(e.attempts, 2);
    let history = s.history(EXECUTION).unwrap();
    let names: Vec<_> = history.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, STEPS);
    // The steps of the killed run are the same checkpoints, not new recordings.
    for (i, (_, _, id)) in ran_first.iter().enumerate() {
        assert_eq!(Some(history[i].id.to_string()), *id);
    }
}

#[test]
fn the_c_program_has_no_leaks_and_no_memory_errors_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!(
            "SKIPPED: valgrind is not installed, so the C example was not checked for leaks \
             (apt-get install valgrind)"
        );
        return;
    }
    let store = scratch().join("valgrind-store");
    // A fresh run records every step; the second replays them all (the read path).
    for (round, expect) in [(1, "ran"), (2, "replayed")] {
        let out = Command::new("valgrind")
            .args([
                "--leak-check=full",
                // RocksDB's and Rust's static data still reachable at exit is not a leak.
                "--errors-for-leak-kinds=definite,indirect",
                "--error-exitcode=1",
            ])
            .arg(program())
            .arg(&store)
            .env("ONBOARDING_STEP_MS", "0")
            .env("ONBOARDING_DURABILITY", "buffered")
            .output()
            .expect("run valgrind");
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "round {round} under valgrind failed:\n{stdout}\n{stderr}"
        );
        assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
        assert!(
            stderr.contains("definitely lost: 0 bytes") || stderr.contains("no leaks are possible"),
            "{stderr}"
        );
        let outcomes: Vec<_> = steps(&stdout).into_iter().map(|s| s.1).collect();
        assert_eq!(outcomes, [expect; 4], "round {round}:\n{stdout}");
        assert!(
            stdout.contains(&format!("completed {EXECUTION}")),
            "{stdout}"
        );
    }
}

#[test]
fn the_c_program_links_against_the_shared_library_too() {
    let program = make("shared", "onboarding-shared");
    let out = Command::new(&program)
        .arg(scratch().join("shared-store"))
        .env("ONBOARDING_STEP_MS", "0")
        .env("ONBOARDING_DURABILITY", "none")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(steps(&stdout).len(), 4, "{stdout}");
    assert!(stdout.contains("verify: ok"), "{stdout}");

    // A wrong argument is reported with Omium's status name and message.
    let out = Command::new(&program)
        .arg(scratch().join("shared-store"))
        .env("ONBOARDING_DURABILITY", "fast")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr.trim_end(),
        "onboarding: opening the store failed: [invalid_argument] omium_store_open: argument \
         `durability` is \"fast\"; expected \"sync\", \"buffered\" or \"none\" (NULL: \"sync\")"
    );
}

#[test]
fn the_header_compiles_as_strict_c_and_as_cxx() {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let source = scratch().join("uses_header.c");
    std::fs::write(
        &source,
        "#include \"omium.h\"\n\
         int main(void) { omium_buffer b = {0, 0}; omium_buffer_free(&b); \
         return omium_status_name(OMIUM_ERR_BUSY)[0] == 'b' ? 0 : 1; }\n",
    )
    .unwrap();
    let mut compilers = vec![(
        "gcc",
        vec!["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"],
    )];
    if Command::new("g++").arg("--version").output().is_ok() {
        compilers.push((
            "g++",
            vec!["-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror"],
        ));
    } else {
        println!("SKIPPED: g++ is not installed, so the header was not compiled as C++");
    }
    for (cc, flags) in compilers {
        let out = Command::new(cc)
            .args(&flags)
            .arg("-fsyntax-only")
            .arg("-I")
            .arg(&include)
            .arg(&source)
            .output()
            .unwrap_or_else(|e| panic!("run {cc}: {e}"));
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{cc} {flags:?}:\n{stdout}\n{stderr}");
    }
}
