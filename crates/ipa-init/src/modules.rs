//! Native kernel-module loading: the parts of kmod/modprobe a ramdisk needs.
//!
//! [`ModuleIndex`] reads depmod's output in `/lib/modules/<release>/` (`modules.dep`,
//! `modules.alias`, `modules.builtin`, optionally `modules.softdep` and
//! `modules.builtin.alias`). [`Coldplug`] matches modaliases (from [`scan_modaliases`]) and
//! module names against it and inserts each module after its dependencies through a
//! [`ModuleLoader`]: [`FinitModuleLoader`] calls `finit_module(2)`, [`RecordingLoader`] records
//! the calls for tests and dry runs.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cmdline::{ModulePlan, module_name};
use crate::error::Error;
use crate::glob::fnmatch;

/// `MODULE_INIT_COMPRESSED_FILE` (Linux 5.17+): the kernel decompresses the module itself.
pub const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// The module name of a `modules.dep` path (`kernel/.../nvme-core.ko.xz` → `nvme_core`).
pub fn name_from_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = [".xz", ".zst", ".gz"].iter().find_map(|ext| base.strip_suffix(ext)).unwrap_or(base);
    module_name(base.strip_suffix(".ko").unwrap_or(base))
}

/// Is this module file compressed (so `finit_module` needs `MODULE_INIT_COMPRESSED_FILE`)?
pub fn is_compressed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "xz" || e == "zst" || e == "gz")
}

#[derive(Debug, Clone)]
struct ModEntry {
    /// As written in modules.dep (relative to the modules directory, or absolute).
    path: String,
    deps: Vec<String>,
}

#[derive(Debug, Clone)]
struct Alias {
    pattern: String,
    module: String,
}

/// The bucket of a pattern: its text before the first `:` when that part has no wildcard.
fn bucket_key(pattern: &str) -> Option<&str> {
    let (prefix, _) = pattern.split_once(':')?;
    (!prefix.contains(['*', '?', '[', '\\'])).then_some(prefix)
}

/// What a name passed to the loader turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Loadable modules (one name, or every module an alias names).
    Modules(Vec<String>),
    /// Built into the kernel: nothing to load.
    Builtin,
    /// Neither a module, a built-in nor an alias.
    Unknown,
}

/// depmod's index of one kernel's modules.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    modules: HashMap<String, ModEntry>,
    builtin: HashSet<String>,
    aliases: Vec<Alias>,
    buckets: HashMap<String, Vec<usize>>,
    /// Aliases whose bus prefix has a wildcard: tried against every modalias.
    unbucketed: Vec<usize>,
    builtin_aliases: Vec<String>,
    /// module → (pre, post) soft dependencies (names or aliases).
    softdeps: HashMap<String, (Vec<String>, Vec<String>)>,
}

fn read_optional(path: &Path) -> Result<String, Error> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn content_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

impl ModuleIndex {
    /// Read a modules directory (`/lib/modules/<release>`). `modules.dep` is required.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let dep_path = dir.join("modules.dep");
        let dep = match fs::read_to_string(&dep_path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NoModulesDep { dir: dir.into() });
            }
            Err(e) => return Err(Error::io(dep_path, e)),
        };
        let alias = read_optional(&dir.join("modules.alias"))?;
        let builtin = read_optional(&dir.join("modules.builtin"))?;
        let softdep = read_optional(&dir.join("modules.softdep"))?;
        let builtin_alias = read_optional(&dir.join("modules.builtin.alias"))?;
        let mut index = Self::from_strs(&dep, &alias, &builtin, &softdep);
        index.dir = dir.to_path_buf();
        index.builtin_aliases = content_lines(&builtin_alias)
            .filter_map(|l| l.strip_prefix("alias "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        Ok(index)
    }

    /// Build an index from the files' contents (the directory is then `/`-relative paths
    /// stay as written).
    pub fn from_strs(dep: &str, alias: &str, builtin: &str, softdep: &str) -> Self {
        let mut index = ModuleIndex::default();
        for line in content_lines(dep) {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let name = name_from_path(path.trim());
            let deps = deps.split_whitespace().map(name_from_path).collect();
            index.modules.insert(name, ModEntry { path: path.trim().to_string(), deps });
        }
        index.builtin = content_lines(builtin).map(name_from_path).collect();
        for line in content_lines(alias) {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(pattern), Some(module)) =
                (words.next(), words.next(), words.next())
            {
                let i = index.aliases.len();
                index
                    .aliases
                    .push(Alias { pattern: pattern.to_string(), module: module_name(module) });
                match bucket_key(pattern) {
                    Some(key) => index.buckets.entry(key.to_string()).or_default().push(i),
                    None => index.unbucketed.push(i),
                }
            }
        }
        for line in content_lines(softdep) {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next().map(module_name) else {
                continue;
            };
            let entry = index.softdeps.entry(module).or_default();
            let mut post = false;
            for w in words {
                match w {
                    "pre:" => post = false,
                    "post:" => post = true,
                    dep if post => entry.1.push(dep.to_string()),
                    dep => entry.0.push(dep.to_string()),
                }
            }
        }
        index
    }

    /// The modules directory this index was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of loadable modules.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// True when the index knows no loadable module.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Is `name` a loadable module?
    pub fn contains(&self, name: &str) -> bool {
        self.modules.contains_key(&module_name(name))
    }

    /// Is `name` built into the kernel?
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_name(name))
    }

    /// The module file of `name` (joined to the modules directory when relative).
    pub fn path_of(&self, name: &str) -> Option<PathBuf> {
        let e = self.modules.get(name)?;
        let p = Path::new(&e.path);
        Some(if p.is_absolute() { p.to_path_buf() } else { self.dir.join(p) })
    }

    /// Every module whose alias pattern matches `modalias`, in `modules.alias` order,
    /// without duplicates.
    pub fn lookup_alias(&self, modalias: &str) -> Vec<String> {
        let mut idx: Vec<usize> = self.unbucketed.clone();
        if let Some((bus, _)) = modalias.split_once(':')
            && let Some(b) = self.buckets.get(bus)
        {
            idx.extend_from_slice(b);
        }
        idx.sort_unstable();
        let mut out: Vec<String> = Vec::new();
        for i in idx {
            let a = &self.aliases[i];
            if !out.contains(&a.module) && fnmatch(&a.pattern, modalias) {
                out.push(a.module.clone());
            }
        }
        out
    }

    /// Resolve a name from a module list or a softdep: a module, a built-in, or an alias
    /// (`fs-vfat`, `crypto-crc32c`).
    pub fn resolve(&self, name: &str) -> Resolved {
        let n = module_name(name);
        if self.modules.contains_key(&n) {
            return Resolved::Modules(vec![n]);
        }
        if self.builtin.contains(&n) {
            return Resolved::Builtin;
        }
        let via_alias = self.lookup_alias(name.trim());
        if !via_alias.is_empty() {
            return Resolved::Modules(via_alias);
        }
        if self.builtin_aliases.iter().any(|p| fnmatch(p, name.trim())) {
            return Resolved::Builtin;
        }
        Resolved::Unknown
    }

    /// `modules` and everything they need, dependencies first (depth-first post-order over
    /// `modules.dep`, soft `pre:` dependencies before and `post:` ones after a module). Each
    /// module appears once; built-ins and unknown soft dependencies are skipped.
    pub fn load_order(&self, modules: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for m in modules {
            self.visit(&module_name(m), &mut seen, &mut out, 0);
        }
        out
    }

    fn visit(&self, m: &str, seen: &mut HashSet<String>, out: &mut Vec<String>, depth: usize) {
        if depth > 64 || !seen.insert(m.to_string()) {
            return;
        }
        let Some(entry) = self.modules.get(m) else {
            return;
        };
        let (pre, post) = self.softdeps.get(m).cloned().unwrap_or_default();
        for s in &pre {
            if let Resolved::Modules(ms) = self.resolve(s) {
                for d in ms {
                    self.visit(&d, seen, out, depth + 1);
                }
            }
        }
        for d in &entry.deps {
            self.visit(d, seen, out, depth + 1);
        }
        out.push(m.to_string());
        for s in &post {
            if let Resolved::Modules(ms) = self.resolve(s) {
                for d in ms {
                    self.visit(&d, seen, out, depth + 1);
                }
            }
        }
    }
}

/// A device that has a modalias: its path as uevents name it (`/devices/pci0000:00/...`,
/// relative to the sysfs root) and the modalias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAlias {
    pub devpath: String,
    pub modalias: String,
}

/// Read every `modalias` file under `devices` (normally `/sys/devices`), not following
/// symlinks, at most `max_depth` directories deep. Sorted, without duplicates.
pub fn scan_modaliases(devices: &Path, max_depth: usize) -> Vec<String> {
    let mut out: Vec<String> =
        scan_devices(devices, max_depth).into_iter().map(|d| d.modalias).collect();
    out.sort();
    out.dedup();
    out
}

/// [`scan_modaliases`] with each modalias's device: `devpath` is `/devices/...` (the
/// directory holding the `modalias` file, below `devices`), as in a uevent's `DEVPATH`.
/// In directory order.
pub fn scan_devices(devices: &Path, max_depth: usize) -> Vec<DeviceAlias> {
    fn walk(dir: &Path, rel: &str, depth: usize, max: usize, out: &mut Vec<DeviceAlias>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth < max {
                    let sub = format!("{rel}/{}", e.file_name().to_string_lossy());
                    walk(&e.path(), &sub, depth + 1, max, out);
                }
            } else if ft.is_file()
                && e.file_name() == "modalias"
                && let Ok(s) = fs::read_to_string(e.path())
            {
                let s = s.trim();
                if !s.is_empty() {
                    out.push(DeviceAlias { devpath: rel.to_string(), modalias: s.to_string() });
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(devices, "/devices", 0, max_depth, &mut out);
    out
}

/// Is `modalias` a network controller's: a PCI function of base class 0x02
/// (`pci:v…d…sv…sd…bc02sc…i…`; the hex digits are upper case, so `bc` is the field)?
pub fn is_network_modalias(modalias: &str) -> bool {
    modalias
        .strip_prefix("pci:")
        .and_then(|r| r.find("bc").map(|i| &r[i + 2..]))
        .is_some_and(|class| class.starts_with("02"))
}

/// Network first: which devices are network controllers or sit below one (the `virtio0`
/// that virtio_pci creates under a virtio-net PCI function), so their drivers can be loaded
/// before everything else and DHCP can start while storage drivers load.
///
/// A device is a network device when its modalias is [`is_network_modalias`] (it becomes a
/// root) or its devpath is below a root seen so far (in this or an earlier [`split`]).
///
/// [`split`]: NetworkFirst::split
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFirst {
    roots: Vec<String>,
}

impl NetworkFirst {
    /// The network controllers' devpaths.
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    fn below_a_root(&self, devpath: &str) -> bool {
        self.roots.iter().any(|r| {
            devpath
                .strip_prefix(r.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// Split `devices` into the modaliases of network devices and the others (each list in
    /// order, without duplicates; a modalias of both kinds is a network one).
    pub fn split(&mut self, devices: &[DeviceAlias]) -> (Vec<String>, Vec<String>) {
        for d in devices {
            if is_network_modalias(&d.modalias) && !self.below_a_root(&d.devpath) {
                self.roots.push(d.devpath.clone());
            }
        }
        let mut net: Vec<String> = Vec::new();
        let mut other: Vec<String> = Vec::new();
        for d in devices {
            if self.below_a_root(&d.devpath) {
                if !net.contains(&d.modalias) {
                    net.push(d.modalias.clone());
                }
            } else if !other.contains(&d.modalias) {
                other.push(d.modalias.clone());
            }
        }
        other.retain(|m| !net.contains(m));
        (net, other)
    }

    /// Has every network controller a network interface (a `net/<ifname>` directory at most
    /// two levels below it, in the sysfs tree at `sys`)? False when there is no controller.
    pub fn all_have_netdev(&self, sys: &Path) -> bool {
        fn has_net(dir: &Path, depth: usize) -> bool {
            if fs::read_dir(dir.join("net")).is_ok_and(|mut e| e.next().is_some()) {
                return true;
            }
            depth > 0
                && fs::read_dir(dir).is_ok_and(|entries| {
                    entries.flatten().any(|e| {
                        e.file_type().is_ok_and(|t| t.is_dir()) && has_net(&e.path(), depth - 1)
                    })
                })
        }
        !self.roots.is_empty()
            && self.roots.iter().all(|r| has_net(&sys.join(r.trim_start_matches('/')), 2))
    }
}

/// What a load attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The module was inserted.
    Loaded,
    /// It was already loaded (`EEXIST`).
    AlreadyLoaded,
}

/// The system call behind module loading.
pub trait ModuleLoader {
    /// Is `name` already live in the kernel? (default: don't know → false)
    fn is_loaded(&self, _name: &str) -> bool {
        false
    }
    /// Insert the module file `path` with the parameter string `params`.
    fn load(&mut self, name: &str, path: &Path, params: &str) -> io::Result<LoadOutcome>;
}

/// The real loader: `finit_module(2)`, with `MODULE_INIT_COMPRESSED_FILE` for `.xz`, `.zst`
/// and `.gz` files; when the kernel cannot decompress (older than 5.17 or without
/// `CONFIG_MODULE_DECOMPRESS`) it decompresses (`.xz` in process, the others with
/// busybox/`zstd`/`gzip`) and calls `init_module(2)`.
#[derive(Debug, Clone)]
pub struct FinitModuleLoader {
    /// `/sys/module`, to skip modules that are already live.
    pub sys_module: PathBuf,
}

impl Default for FinitModuleLoader {
    fn default() -> Self {
        FinitModuleLoader { sys_module: PathBuf::from("/sys/module") }
    }
}

/// A module file's bytes, decompressed: `.xz` in process (liblzma, linked statically: the
/// ramdisk stores every module as `.ko.xz` and the Debian kernel has no
/// `CONFIG_MODULE_DECOMPRESS`), `.zst` and `.gz` with a tool.
fn decompress(path: &Path) -> io::Result<Vec<u8>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "xz" {
        return decompress_xz(fs::File::open(path)?);
    }
    decompress_with_tool(path, ext)
}

/// Decompress an xz stream (a `.ko.xz` is one xz stream) into memory.
pub fn decompress_xz(input: impl io::Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    io::Read::read_to_end(&mut liblzma::read::XzDecoder::new(input), &mut out)?;
    if out.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty xz stream"));
    }
    Ok(out)
}

fn decompress_with_tool(path: &Path, ext: &str) -> io::Result<Vec<u8>> {
    let tool = match ext {
        "xz" => "xz",
        "zst" => "zstd",
        _ => "gzip",
    };
    let mut candidates: Vec<(PathBuf, Vec<&str>)> = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| (Path::new(d).join(tool), vec!["-dc"]))
        .collect();
    candidates.push((PathBuf::from("/bin/busybox"), vec![tool, "-dc"]));
    for (prog, args) in candidates {
        if !prog.exists() {
            continue;
        }
        let mut cmd = std::process::Command::new(&prog);
        crate::supervisor::unblock_signals_on_exec(&mut cmd);
        let out = cmd
            .args(&args)
            .arg(path)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()?;
        if out.status.success() && !out.stdout.is_empty() {
            return Ok(out.stdout);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("the kernel cannot decompress {ext} modules and no {tool} tool worked"),
    ))
}

impl ModuleLoader for FinitModuleLoader {
    fn is_loaded(&self, name: &str) -> bool {
        self.sys_module.join(name).join("initstate").exists()
    }

    fn load(&mut self, _name: &str, path: &Path, params: &str) -> io::Result<LoadOutcome> {
        let file = fs::File::open(path)?;
        let params = CString::new(params)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in parameters"))?;
        let compressed = is_compressed(path);
        let flags = if compressed {
            nix::kmod::ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE as _)
        } else {
            nix::kmod::ModuleInitFlags::empty()
        };
        let errno = match nix::kmod::finit_module(&file, &params, flags) {
            Ok(()) => return Ok(LoadOutcome::Loaded),
            Err(e) => e as i32,
        };
        let err = io::Error::from_raw_os_error(errno);
        if errno == libc::EEXIST {
            return Ok(LoadOutcome::AlreadyLoaded);
        }
        if !(compressed && matches!(errno, libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)) {
            return Err(err);
        }
        let image = decompress(path)?;
        match nix::kmod::init_module(&image, &params) {
            Ok(()) => Ok(LoadOutcome::Loaded),
            Err(nix::errno::Errno::EEXIST) => Ok(LoadOutcome::AlreadyLoaded),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// A loader that only records what it was asked to do (tests, `--dry-run`). Modules in
/// `fail` fail with that errno.
#[derive(Debug, Clone, Default)]
pub struct RecordingLoader {
    /// (name, path, params) of every call, in order.
    pub calls: Vec<(String, PathBuf, String)>,
    pub fail: HashMap<String, i32>,
    /// Modules reported as already live.
    pub live: HashSet<String>,
}

impl ModuleLoader for RecordingLoader {
    fn is_loaded(&self, name: &str) -> bool {
        self.live.contains(name)
    }

    fn load(&mut self, name: &str, path: &Path, params: &str) -> io::Result<LoadOutcome> {
        self.calls.push((name.to_string(), path.to_path_buf(), params.to_string()));
        match self.fail.get(name) {
            Some(&errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(LoadOutcome::Loaded),
        }
    }
}

/// Why a module was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub module: String,
    pub reason: String,
}

/// What one batch of loads did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Inserted by this batch, in order.
    pub loaded: Vec<String>,
    /// Failed in this batch.
    pub failed: Vec<Failure>,
    /// Names from a module list that are neither modules, built-ins nor aliases.
    pub unknown: Vec<String>,
}

/// Loads modules across coldplug passes, remembering what is loaded and what failed so a
/// module is tried once.
#[derive(Debug)]
pub struct Coldplug<L> {
    pub index: ModuleIndex,
    pub loader: L,
    plan: ModulePlan,
    done: HashSet<String>,
    failed: HashMap<String, String>,
    /// Every module inserted so far, in order.
    pub loaded: Vec<String>,
}

impl<L: ModuleLoader> Coldplug<L> {
    pub fn new(index: ModuleIndex, loader: L, plan: ModulePlan) -> Self {
        Coldplug {
            index,
            loader,
            plan,
            done: HashSet::new(),
            failed: HashMap::new(),
            loaded: Vec::new(),
        }
    }

    fn blacklisted(&self, m: &str) -> bool {
        self.plan.blacklist.iter().any(|b| b == m)
    }

    /// The modules `modaliases` call for (blacklist applied, nothing loaded yet filtered).
    pub fn modules_for(&self, modaliases: &[String]) -> Vec<String> {
        let mut wanted: Vec<String> = Vec::new();
        for a in modaliases {
            for m in self.index.lookup_alias(a) {
                if !wanted.contains(&m) && !self.blacklisted(&m) {
                    wanted.push(m);
                }
            }
        }
        wanted
    }

    /// One coldplug pass over `modaliases`.
    pub fn coldplug(&mut self, modaliases: &[String]) -> Report {
        let wanted = self.modules_for(modaliases);
        self.load_all(&wanted)
    }

    /// Load a list of names (modules or aliases; `#` comments and blank lines are the
    /// caller's business). Built-ins are skipped, unknown names reported.
    pub fn load_names(&mut self, names: &[String]) -> Report {
        let mut wanted = Vec::new();
        let mut unknown = Vec::new();
        for n in names {
            match self.index.resolve(n) {
                Resolved::Modules(ms) => {
                    for m in ms {
                        if !self.blacklisted(&m) && !wanted.contains(&m) {
                            wanted.push(m);
                        }
                    }
                }
                Resolved::Builtin => {}
                Resolved::Unknown => unknown.push(n.clone()),
            }
        }
        let mut report = self.load_all(&wanted);
        report.unknown = unknown;
        report
    }

    fn load_all(&mut self, wanted: &[String]) -> Report {
        let mut report = Report::default();
        let order = self.index.load_order(wanted);
        for m in order {
            if self.done.contains(&m) || self.failed.contains_key(&m) {
                continue;
            }
            if self.loader.is_loaded(&m) {
                self.done.insert(m);
                continue;
            }
            // A module whose hard dependency failed would fail with "Unknown symbol".
            let dep_failed = self
                .index
                .modules
                .get(&m)
                .and_then(|e| e.deps.iter().find(|d| self.failed.contains_key(*d)))
                .cloned();
            if let Some(dep) = dep_failed {
                let reason = format!("dependency {dep} failed");
                self.failed.insert(m.clone(), reason.clone());
                report.failed.push(Failure { module: m, reason });
                continue;
            }
            let Some(path) = self.index.path_of(&m) else {
                continue;
            };
            let params = self.plan.params_for(&m);
            match self.loader.load(&m, &path, &params) {
                Ok(LoadOutcome::Loaded) => {
                    self.done.insert(m.clone());
                    self.loaded.push(m.clone());
                    report.loaded.push(m);
                }
                Ok(LoadOutcome::AlreadyLoaded) => {
                    self.done.insert(m);
                }
                Err(e) => {
                    let reason = e.to_string();
                    self.failed.insert(m.clone(), reason.clone());
                    report.failed.push(Failure { module: m, reason });
                }
            }
        }
        report
    }
}

/// Parse a module list file (`/etc/ipa-init/modules`): one name per line, `#` comments.
pub fn parse_module_list(text: &str) -> Vec<String> {
    let (fg, bg) = parse_module_list_split(text);
    fg.into_iter().chain(bg).collect()
}

/// [`parse_module_list`] split by the optional second word of a line: names flagged
/// `background` (file systems, md personalities, loop) are loaded by a thread started after
/// the agent; nothing waits for them, because the kernel requests each of
/// them itself (`fs-ext4`, `md-raid1`, `char-major-10-237`, ... through `/sbin/modprobe`)
/// the moment something needs it. Every other name is loaded before the network starts.
pub fn parse_module_list_split(text: &str) -> (Vec<String>, Vec<String>) {
    let mut fg = Vec::new();
    let mut bg = Vec::new();
    for l in text.lines() {
        let mut words = l.split('#').next().unwrap_or("").split_whitespace();
        let Some(name) = words.next() else { continue };
        if words.any(|w| w == "background") {
            bg.push(name.to_string());
        } else {
            fg.push(name.to_string());
        }
    }
    (fg, bg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/nvme/host/nvme-core.ko: kernel/lib/crc64.ko
kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko kernel/lib/crc64.ko
kernel/lib/crc64.ko:
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko
kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko
kernel/drivers/ata/libata.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/block/virtio_blk.ko.xz:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/crypto/crc32c_generic.ko:
kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko
kernel/fs/fat/fat.ko:
";
    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000002v* virtio_blk
alias virtio:d00000001v* virtio_net
alias pci:v*d*sv*sd*bc01sc08i02* nvme
alias pci:v0000106Bd00002005sv*sd*bc*sc*i* nvme
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias crypto-crc32c crc32c_generic
alias crypto-crc32c-generic crc32c_generic
alias fs-vfat vfat
alias fs-ext4 ext4
alias acpi*:PNP0A03:* some_acpi_driver
";
    const BUILTIN: &str = "kernel/drivers/scsi/sd_mod.ko\nkernel/fs/efivarfs/efivarfs.ko\n";
    const SOFTDEP: &str = "softdep ext4 pre: crypto-crc32c\n";

    fn index() -> ModuleIndex {
        ModuleIndex::from_strs(DEP, ALIAS, BUILTIN, SOFTDEP)
    }

    fn names(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(name_from_path("kernel/drivers/nvme/host/nvme-core.ko"), "nvme_core");
        assert_eq!(name_from_path("kernel/drivers/block/virtio_blk.ko.xz"), "virtio_blk");
        assert_eq!(name_from_path("/abs/x-y.ko.zst"), "x_y");
        assert!(is_compressed(Path::new("a/virtio_blk.ko.xz")));
        assert!(is_compressed(Path::new("a/virtio_blk.ko.zst")));
        assert!(!is_compressed(Path::new("a/virtio_blk.ko")));
    }

    #[test]
    fn alias_lookup() {
        let i = index();
        assert_eq!(i.len(), 18);
        let virtio_net_pci = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        assert_eq!(i.lookup_alias(virtio_net_pci), vec!["virtio_pci"]);
        assert_eq!(i.lookup_alias("virtio:d00000001v00001AF4"), vec!["virtio_net"]);
        assert_eq!(i.lookup_alias("virtio:d00000002v00001AF4"), vec!["virtio_blk"]);
        assert_eq!(
            i.lookup_alias("pci:v0000106Bd00002005sv00000000sd00000000bc01sc08i02"),
            vec!["nvme"],
            "two matching aliases of one module give it once"
        );
        assert_eq!(
            i.lookup_alias("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"),
            vec!["ahci"]
        );
        assert_eq!(i.lookup_alias("acpi:PNP0A03:"), vec!["some_acpi_driver"], "unbucketed");
        assert!(i.lookup_alias("usb:v1234p5678").is_empty());
        assert!(i.lookup_alias("nonsense").is_empty());
    }

    #[test]
    fn dependency_order_and_builtins() {
        let i = index();
        assert_eq!(
            i.load_order(&["nvme".into()]),
            vec!["crc64", "nvme_core", "nvme"],
            "dependencies first, each once"
        );
        assert_eq!(
            i.load_order(&["ahci".into(), "nvme".into(), "nvme-core".into()]),
            vec!["libata", "libahci", "ahci", "crc64", "nvme_core", "nvme"]
        );
        // Soft pre-dependency through an alias.
        assert_eq!(
            i.load_order(&["ext4".into()]),
            vec!["crc32c_generic", "jbd2", "mbcache", "ext4"]
        );
        // Built-ins and unknown names load nothing.
        assert!(i.load_order(&["sd_mod".into(), "nope".into()]).is_empty());
        assert_eq!(i.resolve("sd_mod"), Resolved::Builtin);
        assert_eq!(i.resolve("sd-mod"), Resolved::Builtin);
        assert_eq!(i.resolve("fs-vfat"), Resolved::Modules(vec!["vfat".into()]));
        assert_eq!(i.resolve("nope"), Resolved::Unknown);
    }

    #[test]
    fn coldplug_passes_load_once_with_deps_and_skip_failures() {
        let mut loader = RecordingLoader::default();
        loader.fail.insert("libahci".into(), libc::ENODEV);
        let plan = ModulePlan {
            blacklist: vec!["virtio_blk".into()],
            params: vec![("nvme_core".into(), "multipath=N".into())],
            ..Default::default()
        };
        let mut c = Coldplug::new(index(), loader, plan);
        let pass1 = c.coldplug(&[
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".into(),
            "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02".into(),
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".into(),
        ]);
        assert_eq!(
            names(&pass1.loaded),
            vec!["virtio_pci_modern_dev", "virtio_pci", "crc64", "nvme_core", "nvme", "libata"]
        );
        assert_eq!(
            pass1.failed,
            vec![
                Failure {
                    module: "libahci".into(),
                    reason: io::Error::from_raw_os_error(libc::ENODEV).to_string()
                },
                Failure { module: "ahci".into(), reason: "dependency libahci failed".into() },
            ]
        );
        let calls = &c.loader.calls;
        assert_eq!(calls.iter().find(|c| c.0 == "nvme_core").unwrap().2, "multipath=N");
        assert_eq!(calls[0].1, Path::new("kernel/drivers/virtio/virtio_pci_modern_dev.ko"));

        // virtio_pci made virtio devices appear: pass 2 loads their drivers (virtio_blk is
        // blacklisted), and neither loaded nor failed modules are tried again.
        let before = c.loader.calls.len();
        let pass2 = c.coldplug(&[
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00".into(),
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01".into(),
            "virtio:d00000001v00001AF4".into(),
            "virtio:d00000002v00001AF4".into(),
        ]);
        assert_eq!(names(&pass2.loaded), vec!["failover", "net_failover", "virtio_net"]);
        assert!(pass2.failed.is_empty());
        assert_eq!(c.loader.calls.len(), before + 3);
        // Pass 3: nothing new.
        let pass3 = c.coldplug(&["virtio:d00000001v00001AF4".into()]);
        assert_eq!(pass3, Report::default());

        // The fixed list: built-ins skipped, aliases resolved, unknown names reported,
        // modules already live are not inserted again.
        c.loader.live.insert("fat".into());
        let (fg, bg) =
            parse_module_list_split("sd_mod\nxfs background # big\n\nloop  background\nsr_mod\n");
        assert_eq!(
            (fg, bg),
            (vec!["sd_mod".to_string(), "sr_mod".into()], vec!["xfs".into(), "loop".into()])
        );
        let list = parse_module_list("# fixed\nsd_mod\nvfat  # FAT\n\nfs-ext4\nnosuch\nnvme\n");
        assert_eq!(list, vec!["sd_mod", "vfat", "fs-ext4", "nosuch", "nvme"]);
        let r = c.load_names(&list);
        assert_eq!(names(&r.loaded), vec!["vfat", "crc32c_generic", "jbd2", "mbcache", "ext4"]);
        assert_eq!(r.unknown, vec!["nosuch"]);
        assert!(!c.loaded.contains(&"fat".to_string()));
        assert_eq!(c.loaded.len(), 6 + 3 + 5);
    }

    #[test]
    fn scans_a_sysfs_tree_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("devices");
        let dev = d.join("pci0000:00/0000:00:03.0");
        fs::create_dir_all(dev.join("virtio0")).unwrap();
        fs::write(dev.join("modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n")
            .unwrap();
        fs::write(dev.join("virtio0/modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        fs::write(dev.join("virtio0/uevent"), "MODALIAS=x\n").unwrap();
        // A loop through a symlink must not be followed, and a too-deep device is skipped.
        std::os::unix::fs::symlink(&d, dev.join("subsystem")).unwrap();
        let deep = d.join("a/b/c/d/e");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("modalias"), "deep:x\n").unwrap();
        fs::write(d.join("a/modalias"), "\n").unwrap();
        assert_eq!(
            scan_modaliases(&d, 3),
            vec![
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
                "virtio:d00000001v00001AF4"
            ]
        );
        assert_eq!(scan_modaliases(&d, 8).len(), 3);
    }

    fn dev(devpath: &str, modalias: &str) -> DeviceAlias {
        DeviceAlias { devpath: devpath.into(), modalias: modalias.into() }
    }

    #[test]
    fn the_sysfs_walk_names_each_modalias_with_its_device_path() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("devices");
        let nic = d.join("pci0000:00/0000:00:02.0");
        fs::create_dir_all(nic.join("virtio0")).unwrap();
        fs::write(nic.join("modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n")
            .unwrap();
        fs::write(nic.join("virtio0/modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        let mut found = scan_devices(&d, 8);
        found.sort_by(|a, b| a.devpath.cmp(&b.devpath));
        assert_eq!(
            found,
            vec![
                dev(
                    "/devices/pci0000:00/0000:00:02.0",
                    "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
                ),
                dev("/devices/pci0000:00/0000:00:02.0/virtio0", "virtio:d00000001v00001AF4"),
            ]
        );
    }

    #[test]
    fn network_controllers_are_pci_base_class_02() {
        // virtio-net, an Intel 82574L (e1000e), a Mellanox ConnectX-5 (class 0x0200 too).
        assert!(is_network_modalias("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"));
        assert!(is_network_modalias("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"));
        assert!(is_network_modalias("pci:v000015B3d00001017sv000015B3sd00000007bc02sc00i00"));
        // AHCI (01 06), virtio-blk (01 00), a NIC's "bc" in upper-case hex digits elsewhere,
        // a USB device, a virtio device.
        assert!(!is_network_modalias("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"));
        assert!(!is_network_modalias("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00"));
        assert!(!is_network_modalias("pci:v0000BC02d00001234sv00000000sd00000000bc03sc00i00"));
        assert!(!is_network_modalias("usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00"));
        assert!(!is_network_modalias("virtio:d00000001v00001AF4"));
    }

    #[test]
    fn network_first_takes_nics_and_what_sits_below_them_and_keeps_the_rest_for_later() {
        let nic = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        let blk = "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00";
        let ahci = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";
        let mut first = NetworkFirst::default();
        // The sysfs walk: virtio_pci is wanted by the NIC and by the disk alike.
        let (net, other) = first.split(&[
            dev("/devices/pci0000:00/0000:00:1f.2", ahci),
            dev("/devices/pci0000:00/0000:00:02.0", nic),
            dev("/devices/pci0000:00/0000:00:03.0", blk),
            dev("/devices/platform/serial8250", "platform:serial8250"),
        ]);
        assert_eq!(net, vec![nic]);
        assert_eq!(other, vec![ahci, blk, "platform:serial8250"]);
        assert_eq!(first.roots(), ["/devices/pci0000:00/0000:00:02.0"]);
        // The uevents after virtio_pci: virtio0 sits below the NIC, virtio1 below the disk
        // (a devpath that only starts with the same characters is not below it).
        let (net, other) = first.split(&[
            dev("/devices/pci0000:00/0000:00:02.0/virtio0", "virtio:d00000001v00001AF4"),
            dev("/devices/pci0000:00/0000:00:03.0/virtio1", "virtio:d00000002v00001AF4"),
            dev("/devices/pci0000:00/0000:00:02.00/x", "x:y"),
        ]);
        assert_eq!(net, vec!["virtio:d00000001v00001AF4"]);
        assert_eq!(other, vec!["virtio:d00000002v00001AF4", "x:y"]);
        // A modalias seen on both kinds of device is loaded with the network drivers.
        let (net, other) = first.split(&[
            dev("/devices/pci0000:00/0000:00:03.0/virtio1", "virtio:d00000001v00001AF4"),
            dev("/devices/pci0000:00/0000:00:02.0/virtio0", "virtio:d00000001v00001AF4"),
        ]);
        assert_eq!(net, vec!["virtio:d00000001v00001AF4"]);
        assert!(other.is_empty());
        // Two ports of one controller are one root each, a function below another is not.
        let mut two = NetworkFirst::default();
        two.split(&[
            dev("/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0", nic),
            dev("/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.1", nic),
            dev("/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.1/sriov", nic),
        ]);
        assert_eq!(two.roots().len(), 2);
    }

    #[test]
    fn network_first_is_done_when_every_controller_has_an_interface() {
        let t = tempfile::tempdir().unwrap();
        let nic = "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00";
        let mut first = NetworkFirst::default();
        assert!(!first.all_have_netdev(t.path()), "no controller: nothing to wait for here");
        first.split(&[
            dev("/devices/pci0000:00/0000:00:02.0", nic),
            dev("/devices/pci0000:00/0000:00:04.0", nic),
        ]);
        let a = t.path().join("devices/pci0000:00/0000:00:02.0");
        let b = t.path().join("devices/pci0000:00/0000:00:04.0");
        fs::create_dir_all(a.join("virtio0/net")).unwrap();
        fs::create_dir_all(&b).unwrap();
        assert!(!first.all_have_netdev(t.path()), "an empty net/ directory has no interface");
        fs::create_dir_all(a.join("virtio0/net/eth0")).unwrap();
        assert!(!first.all_have_netdev(t.path()), "the second NIC has none yet");
        fs::create_dir_all(b.join("net/eth1")).unwrap();
        assert!(first.all_have_netdev(t.path()));
    }

    #[test]
    fn loads_a_modules_directory() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(ModuleIndex::load(t.path()), Err(Error::NoModulesDep { .. })));
        fs::write(t.path().join("modules.dep"), DEP).unwrap();
        fs::write(t.path().join("modules.alias"), ALIAS).unwrap();
        fs::write(t.path().join("modules.builtin.alias"), "alias fs-efivarfs efivarfs\n").unwrap();
        let i = ModuleIndex::load(t.path()).unwrap();
        assert_eq!(
            i.path_of("virtio_blk").unwrap(),
            t.path().join("kernel/drivers/block/virtio_blk.ko.xz")
        );
        assert_eq!(i.resolve("fs-efivarfs"), Resolved::Builtin);
        assert!(!i.is_builtin("sd_mod"), "no modules.builtin file");
    }

    #[test]
    fn xz_modules_are_decompressed_in_process_and_corrupt_ones_are_an_error() {
        let t = tempfile::tempdir().unwrap();
        // A module-like payload: ELF magic and repetitive sections, as xz -9e --check=crc32
        // would store it.
        let mut image = b"\x7fELF".to_vec();
        image.extend((0..200_000u32).map(|i| (i % 251) as u8));
        let mut enc = liblzma::write::XzEncoder::new_stream(
            Vec::new(),
            liblzma::stream::Stream::new_easy_encoder(9, liblzma::stream::Check::Crc32).unwrap(),
        );
        io::Write::write_all(&mut enc, &image).unwrap();
        let xz = enc.finish().unwrap();
        assert!(xz.len() < image.len() / 10, "compressed {} bytes", xz.len());
        let path = t.path().join("virtio_blk.ko.xz");
        fs::write(&path, &xz).unwrap();
        assert!(is_compressed(&path));
        assert_eq!(decompress(&path).unwrap(), image);

        let mut cut = xz.clone();
        cut.truncate(xz.len() / 2);
        fs::write(&path, &cut).unwrap();
        assert!(decompress(&path).is_err(), "a truncated .ko.xz must not load");
        fs::write(&path, b"not xz at all").unwrap();
        assert!(decompress(&path).is_err());
    }
}
