//! Bench-only helper for `npm run bench`: measures the bare OS calls the lock is
//! built on, with nothing but std (`File::lock` is `flock(2)` on Linux).
//! Every mode prints one JSON object on stdout. Not part of the addon.
//!
//!   uncontended <file> <n>   open(O_CREAT) + flock(LOCK_EX) + flock(LOCK_UN) + close, n times
//!   protocol <file> <n> [statx]  our lock's recipe with bare calls: open(O_CREAT|O_EXCL) + flock +
//!                            pwrite(240-byte payload) + unlink + close; with `statx`, also the five
//!                            stat calls the addon made per acquire + release at df5acf6 (dir x2, fd, path x2)
//!   handoff <file> <n>       thread A holds, thread B blocks in flock; ns from A's unlock to B's wake
//!   kill <file> <n> [-- cmd] a child process holds (ours, or `cmd`, which must flock <file> and
//!                            print a line once it holds it); ns from SIGKILL to our blocking flock returning
//!   hold <file>              lock, print "ready", hold until stdin closes (used by `kill` and the CPU test)
//!   wait <file>              block in flock until granted, print "acquired"
//!   many <dir> <n>           open + flock n files at once: total ns, descriptors and RSS before/after
//!   waitstamp <file>         print "waiting", block in flock, print CLOCK_MONOTONIC µs once granted
//!   replay <dir> <lockpath> <n> <idle_ms> <ops>  floor (1): replay the package's own system-call
//!                            sequence for one acquire + release (read off `strace -f` by the bench;
//!                            ops: comma-separated tokens, see `replay_op`), n times, sleeping
//!                            idle_ms before each (0 = warm, back to back)
//!   holdstamp <file>         lock, print "ready"; on a stdin line: stamp, unlink, unlock, print the stamp
//!                            (µs, CLOCK_MONOTONIC: the clock of Node's process.hrtime, shared by all
//!                            processes), so a Node holder or waiter can be timed against bare flock

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}
extern "C" {
    fn clock_gettime(clk: i32, ts: *mut Timespec) -> i32;
}

/// CLOCK_MONOTONIC in µs (the clock behind Node's process.hrtime).
fn mono_us() -> f64 {
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { clock_gettime(1, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

fn waitstamp(path: &str) {
    let f = open(path);
    println!("waiting");
    std::io::stdout().flush().ok();
    f.lock().expect("lock");
    let t = mono_us();
    println!("{{\"t\":{:.3}}}", t);
}

fn holdstamp(path: &str) {
    let f = open(path);
    f.lock().expect("lock");
    println!("ready");
    std::io::stdout().flush().ok();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let t = mono_us();
    let _ = fs::remove_file(path);
    f.unlock().expect("unlock");
    drop(f);
    println!("{{\"t\":{:.3}}}", t);
}

fn open(path: &str) -> File {
    OpenOptions::new().read(true).write(true).create(true).open(path).expect("open")
}

fn json_list(v: &[u128]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

fn fd_count() -> usize {
    fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn rss_bytes() -> u64 {
    let s = fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn uncontended(path: &str, n: usize) {
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let f = open(path);
        f.lock().expect("lock");
        f.unlock().expect("unlock");
        drop(f);
        s.push(t.elapsed().as_nanos());
    }
    let _ = fs::remove_file(path);
    println!("{{\"samples_ns\":{}}}", json_list(&s));
}

fn protocol(path: &str, n: usize, with_stat: bool) {
    use std::os::unix::fs::FileExt;
    let payload = [b'x'; 240];
    let dir = std::path::Path::new(path).parent().expect("dir").to_path_buf();
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if with_stat {
            let _ = fs::metadata(&dir);
            let _ = fs::metadata(&dir);
        }
        let f = OpenOptions::new().read(true).write(true).create_new(true).open(path).expect("open");
        if with_stat {
            let _ = f.metadata();
        }
        f.lock().expect("lock");
        if with_stat {
            let _ = fs::symlink_metadata(path);
        }
        f.write_at(&payload, 0).expect("write");
        if with_stat {
            let _ = fs::symlink_metadata(path);
        }
        fs::remove_file(path).expect("unlink");
        drop(f);
        s.push(t.elapsed().as_nanos());
    }
    println!("{{\"samples_ns\":{}}}", json_list(&s));
}

fn handoff(path: &str, n: usize) {
    let released_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let holder = open(path);
        holder.lock().expect("lock");
        let ready = Arc::new(Barrier::new(2));
        let (r2, rel2) = (ready.clone(), released_at.clone());
        let p = path.to_string();
        let waiter = std::thread::spawn(move || {
            let f = open(&p);
            r2.wait();
            f.lock().expect("lock");
            let woke = Instant::now();
            let rel = rel2.lock().unwrap().take().expect("release time");
            f.unlock().expect("unlock");
            woke.duration_since(rel).as_nanos()
        });
        ready.wait();
        // Let the waiter get into the blocking flock before we unlock.
        std::thread::sleep(Duration::from_millis(2));
        *released_at.lock().unwrap() = Some(Instant::now());
        holder.unlock().expect("unlock");
        s.push(waiter.join().unwrap());
    }
    let _ = fs::remove_file(path);
    println!("{{\"samples_ns\":{}}}", json_list(&s));
}

fn kill(path: &str, n: usize, holder: &[String]) {
    let exe = std::env::current_exe().expect("exe").to_string_lossy().into_owned();
    let own = vec![exe, "hold".to_string(), path.to_string()];
    let cmd = if holder.is_empty() { &own[..] } else { holder };
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("ready");
        let f = open(path);
        // BARE_IDLE_MS: let the holder sit idle first (the cold variant of the bench).
        if let Some(ms) = std::env::var("BARE_IDLE_MS").ok().and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        let t = Instant::now();
        child.kill().expect("kill");
        f.lock().expect("lock");
        s.push(t.elapsed().as_nanos());
        f.unlock().expect("unlock");
        let _ = child.wait();
    }
    let _ = fs::remove_file(path);
    println!("{{\"samples_ns\":{}}}", json_list(&s));
}

fn hold(path: &str) {
    let f = open(path);
    f.lock().expect("lock");
    println!("ready");
    std::io::stdout().flush().ok();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink); // until the parent closes stdin or dies
    drop(f);
}

fn wait(path: &str) {
    let f = open(path);
    f.lock().expect("lock");
    println!("acquired");
}

fn many(dir: &str, n: usize) {
    let paths: Vec<String> = (0..n).map(|i| format!("{}/s{}.jsonl.lock", dir, i)).collect();
    let (fd0, rss0) = (fd_count(), rss_bytes());
    let t = Instant::now();
    let mut held = Vec::with_capacity(n);
    for p in &paths {
        let f = open(p);
        f.lock().expect("lock");
        held.push(f);
    }
    let ns = t.elapsed().as_nanos();
    let (fd1, rss1) = (fd_count(), rss_bytes());
    for (f, p) in held.into_iter().zip(&paths) {
        let _ = fs::remove_file(p);
        drop(f);
    }
    println!(
        "{{\"ns\":{},\"fdBefore\":{},\"fdAfter\":{},\"rssBefore\":{},\"rssAfter\":{}}}",
        ns, fd0, fd1, rss0, rss1
    );
}

// ---------------------------------------------------------------- replay (floor 1)

extern "C" {
    fn openat(dirfd: i32, path: *const u8, flags: i32, mode: u32) -> i32;
    fn flock(fd: i32, op: i32) -> i32;
    fn pwrite(fd: i32, buf: *const u8, n: usize, off: i64) -> isize;
    fn pread(fd: i32, buf: *mut u8, n: usize, off: i64) -> isize;
    fn linkat(olddirfd: i32, old: *const u8, newdirfd: i32, new: *const u8, flags: i32) -> i32;
    fn unlink(path: *const u8) -> i32;
    fn close(fd: i32) -> i32;
    fn statx(dirfd: i32, path: *const u8, flags: i32, mask: u32, buf: *mut u8) -> i32;
    fn ftruncate(fd: i32, len: i64) -> i32;
    fn fsync(fd: i32) -> i32;
}

// Linux x86_64 / aarch64 values.
const AT_FDCWD: i32 = -100;
const O_RDWR: i32 = 0o2;
const O_CREAT: i32 = 0o100;
const O_EXCL: i32 = 0o200;
const O_NONBLOCK: i32 = 0o4000;
const O_CLOEXEC: i32 = 0o2000000;
const O_NOFOLLOW: i32 = 0o400000;
const O_TMPFILE: i32 = 0o20000000 | 0o200000;
const LOCK_EX: i32 = 2;
const LOCK_NB: i32 = 4;
const LOCK_UN: i32 = 8;
const AT_SYMLINK_NOFOLLOW: i32 = 0x100;
const AT_SYMLINK_FOLLOW: i32 = 0x400;
const AT_EMPTY_PATH: i32 = 0x1000;
const STATX_ALL: u32 = 0xfff;

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// One step of the replayed sequence. Returns the descriptor after the step.
fn replay_op(op: &str, dir: &[u8], lock: &[u8], fd: i32, buf: &mut [u8]) -> i32 {
    let (name, arg) = op.split_once(':').unwrap_or((op, "0"));
    let n: usize = arg.parse().unwrap_or(0).min(buf.len());
    let mut st = [0u8; 256];
    // SAFETY: plain system calls on NUL-terminated paths and buffers we own.
    unsafe {
        match name {
            "statx_dir" => {
                statx(AT_FDCWD, dir.as_ptr(), AT_SYMLINK_NOFOLLOW, STATX_ALL, st.as_mut_ptr());
            }
            "statx_path" => {
                statx(AT_FDCWD, lock.as_ptr(), AT_SYMLINK_NOFOLLOW, STATX_ALL, st.as_mut_ptr());
            }
            "statx_fd" => {
                statx(fd, b"\0".as_ptr(), AT_EMPTY_PATH, STATX_ALL, st.as_mut_ptr());
            }
            "open_tmpfile" => return openat(AT_FDCWD, dir.as_ptr(), O_RDWR | O_CLOEXEC | O_TMPFILE, 0o644),
            "open_excl" => {
                return openat(AT_FDCWD, lock.as_ptr(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o644)
            }
            "open" => {
                return openat(
                    AT_FDCWD,
                    lock.as_ptr(),
                    O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
                    0o644,
                )
            }
            "flock_ex_nb" => {
                flock(fd, LOCK_EX | LOCK_NB);
            }
            "flock_ex" => {
                flock(fd, LOCK_EX);
            }
            "flock_un" => {
                flock(fd, LOCK_UN);
            }
            "pwrite" | "write" => {
                pwrite(fd, buf.as_ptr(), n, 0);
            }
            "pread" | "read" => {
                pread(fd, buf.as_mut_ptr(), n, 0);
            }
            "ftruncate" => {
                ftruncate(fd, n as i64);
            }
            "fsync" => {
                fsync(fd);
            }
            "linkat_fd" => {
                let src = cstr(&format!("/proc/self/fd/{fd}"));
                linkat(AT_FDCWD, src.as_ptr(), AT_FDCWD, lock.as_ptr(), AT_SYMLINK_FOLLOW);
            }
            "unlink" => {
                unlink(lock.as_ptr());
            }
            "close" => {
                close(fd);
                return -1;
            }
            _ => {}
        }
    }
    fd
}

fn replay(dir: &str, lock: &str, n: usize, idle_ms: u64, ops: &str) {
    let ops: Vec<&str> = ops.split(',').filter(|o| !o.is_empty()).collect();
    let (d, l) = (cstr(dir), cstr(lock));
    let mut buf = vec![b'x'; 4096];
    let mut s = Vec::with_capacity(n);
    for _ in 0..n {
        if idle_ms > 0 {
            std::thread::sleep(Duration::from_millis(idle_ms));
        }
        let t = Instant::now();
        let mut fd = -1;
        for op in &ops {
            fd = replay_op(op, &d, &l, fd, &mut buf);
        }
        s.push(t.elapsed().as_nanos());
        if fd >= 0 {
            // SAFETY: closing the descriptor the sequence left open.
            unsafe { close(fd) };
        }
        let _ = fs::remove_file(lock);
    }
    println!("{{\"samples_ns\":{}}}", json_list(&s));
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n = |i: usize| a.get(i).and_then(|x| x.parse().ok()).unwrap_or(100usize);
    match a.get(1).map(String::as_str) {
        Some("uncontended") => uncontended(&a[2], n(3)),
        Some("handoff") => handoff(&a[2], n(3)),
        Some("protocol") => protocol(&a[2], n(3), a.get(4).map_or(false, |x| x == "statx")),
        Some("kill") => kill(&a[2], n(3), a.iter().position(|x| x == "--").map_or(&[][..], |i| &a[i + 1..])),
        Some("hold") => hold(&a[2]),
        Some("wait") => wait(&a[2]),
        Some("many") => many(&a[2], n(3)),
        Some("waitstamp") => waitstamp(&a[2]),
        Some("holdstamp") => holdstamp(&a[2]),
        Some("replay") => replay(&a[2], &a[3], n(4), a.get(5).and_then(|x| x.parse().ok()).unwrap_or(0), a.get(6).map_or("", String::as_str)),
        _ => {
            eprintln!("usage: bare-flock uncontended|handoff|kill|hold|wait|many <path> [n]");
            std::process::exit(2);
        }
    }
}
