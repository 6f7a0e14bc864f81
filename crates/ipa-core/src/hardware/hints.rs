//! Root-device hints (spec `ipa-agent.md` §5.8 and §7).
//!
//! Three layers, each reproducing the reference behaviour rather than an idealised one:
//! * [`spec`]: the oslo.utils `specs_matcher` grammar and operators, with Python's value
//!   semantics (a float never equals a string, `<in>` on a number is a type error, ...);
//! * hint parsing and matching (`parse_root_device_hints`, [`find_devices_by_hints`]): key
//!   validation, lower-casing, URL-quoting of string values, default operators, GiB sizes,
//!   strict booleans, list-valued `serial`/`wwn` in "all serial and wwn" mode;
//! * device selection ([`select_install_device`], [`guess_root_disk`], skip lists, RAID root
//!   volumes) with IPA's `DeviceNotFound` texts.
//!
//! One deliberate superset: `size` accepts `<range-in> [ a b ]` (Ironic's own validator accepts
//! it and documents it); the reference agent rejects it as "not an integer value".

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::BlockDevice;
use crate::error::{AgentError, python_repr};

/// 1 GiB: `size` hints are in GiB.
pub const GIB: u64 = 1 << 30;

/// Smallest device the no-hint default picks (4 GiB).
pub const MIN_ROOT_SIZE: u64 = 4 * GIB;

/// The type of a hint key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintType {
    /// Positive integer (`size`, GiB).
    Int,
    /// String, normalised (lower-cased, URL-quoted).
    Str,
    /// Strict boolean.
    Bool,
}

/// The valid hint keys, in the reference order (used in the "invalid hints" message).
pub const VALID_HINTS: &[(&str, HintType)] = &[
    ("size", HintType::Int),
    ("model", HintType::Str),
    ("wwn", HintType::Str),
    ("serial", HintType::Str),
    ("vendor", HintType::Str),
    ("wwn_with_extension", HintType::Str),
    ("wwn_vendor_extension", HintType::Str),
    ("name", HintType::Str),
    ("rotational", HintType::Bool),
    ("hctl", HintType::Str),
    ("by_path", HintType::Str),
    ("tran", HintType::Str),
];

fn hint_type(key: &str) -> Option<HintType> {
    VALID_HINTS.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
}

/// Why hints could not be evaluated. The class mirrors the Python exception the reference
/// raises; all of them end up as `DeviceNotFound` for the install device.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HintError {
    /// `ValueError`.
    #[error("{0}")]
    Value(String),
    /// `TypeError`.
    #[error("{0}")]
    Type(String),
    /// pyparsing's `ParseException`.
    #[error("{0}")]
    Parse(String),
}

/// The oslo.utils `specs_matcher` language.
pub mod spec {
    use super::HintError;

    /// Operators in the order the grammar tries them (`==` before `=`, `s<=` before `s<`).
    const UNARY_OPS: &[&str] =
        &["==", "=", "!=", "<in>", ">=", "<=", ">", "<", "s==", "s!=", "s<=", "s<", "s>=", "s>"];
    const KEYWORDS_EXTRA: &[&str] = &["<all-in>", "<or>", "<range-in>"];

    /// A value a spec is compared against, with Python's typing.
    #[derive(Debug, Clone, PartialEq)]
    pub enum PyValue {
        /// `str`.
        Str(String),
        /// `float` (device sizes in GiB).
        Float(f64),
    }

    struct Cursor<'a> {
        s: &'a str,
        pos: usize,
    }

    impl<'a> Cursor<'a> {
        fn skip_ws(&mut self) {
            let rest = &self.s[self.pos..];
            let trimmed = rest.trim_start_matches([' ', '\t', '\n', '\r']);
            self.pos += rest.len() - trimmed.len();
        }
        fn rest(&self) -> &'a str {
            &self.s[self.pos..]
        }
        fn literal(&mut self, lit: &str) -> bool {
            self.skip_ws();
            if self.rest().starts_with(lit) {
                self.pos += lit.len();
                true
            } else {
                false
            }
        }
        fn unary_op(&mut self) -> Option<&'static str> {
            self.skip_ws();
            let op = UNARY_OPS.iter().find(|op| self.rest().starts_with(**op))?;
            self.pos += op.len();
            Some(op)
        }
        /// An atom: not starting with any keyword, then `\S+`.
        fn atom(&mut self) -> Option<String> {
            self.skip_ws();
            let rest = self.rest();
            if UNARY_OPS.iter().chain(KEYWORDS_EXTRA).any(|k| rest.starts_with(k)) {
                return None;
            }
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            self.pos += end;
            Some(rest[..end].to_string())
        }
    }

    /// Parse a spec into tokens (operator first) like `make_grammar().parseString` does: a
    /// prefix parse, alternatives tried in order (disjunction, `<all-in>`, `<range-in>`,
    /// unary operator, bare atom), no backtracking inside an alternative.
    pub fn parse(spec: &str) -> Result<Vec<String>, HintError> {
        // disjunction: (<or> atom)+  -> ["<or>", a, b, ...]
        {
            let mut c = Cursor { s: spec, pos: 0 };
            let mut atoms = Vec::new();
            while c.literal("<or>") {
                match c.atom() {
                    Some(a) => atoms.push(a),
                    None => break,
                }
            }
            if !atoms.is_empty() {
                let mut v = vec!["<or>".to_string()];
                v.extend(atoms);
                return Ok(v);
            }
        }
        // nary: <all-in> atom+
        {
            let mut c = Cursor { s: spec, pos: 0 };
            if c.literal("<all-in>") {
                let mut v = vec!["<all-in>".to_string()];
                while let Some(a) = c.atom() {
                    v.push(a);
                }
                if v.len() > 1 {
                    return Ok(v);
                }
            }
        }
        // range: <range-in> atom atom atom atom
        {
            let mut c = Cursor { s: spec, pos: 0 };
            if c.literal("<range-in>") {
                let atoms: Vec<_> = (0..4).map_while(|_| c.atom()).collect();
                if atoms.len() == 4 {
                    let mut v = vec!["<range-in>".to_string()];
                    v.extend(atoms);
                    return Ok(v);
                }
            }
        }
        // unary: op atom
        {
            let mut c = Cursor { s: spec, pos: 0 };
            if let Some(op) = c.unary_op()
                && let Some(a) = c.atom()
            {
                return Ok(vec![op.to_string(), a]);
            }
        }
        let mut c = Cursor { s: spec, pos: 0 };
        match c.atom() {
            Some(a) => Ok(vec![a]),
            None => Err(HintError::Parse(format!("Expected an expression, found {spec:?}"))),
        }
    }

    /// Python's `float(str)`.
    pub fn py_float(s: &str) -> Result<f64, HintError> {
        let t = s.trim();
        let err = || HintError::Value(format!("could not convert string to float: '{s}'"));
        let lower = t.to_ascii_lowercase();
        let unsigned = lower.trim_start_matches(['+', '-']);
        if matches!(unsigned, "inf" | "infinity" | "nan") {
            return lower.replace("infinity", "inf").parse::<f64>().map_err(|_| err());
        }
        if t.is_empty() || t.contains("__") || t.starts_with('_') || t.ends_with('_') {
            return Err(err());
        }
        let cleaned = t.replace('_', "");
        if !cleaned.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
        {
            return Err(err());
        }
        cleaned.parse::<f64>().map_err(|_| err())
    }

    /// `ast.literal_eval` restricted to what can appear here: a (signed) number literal.
    fn literal_number(s: &str) -> Result<f64, HintError> {
        let t = s.trim();
        let body = t.trim_start_matches(['+', '-']);
        let ok = !body.is_empty()
            && body.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.')
            && body.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '_'));
        if !ok {
            return Err(HintError::Value(format!("malformed node or string: {s:?}")));
        }
        py_float(t)
    }

    fn to_float(v: &PyValue) -> Result<f64, HintError> {
        match v {
            PyValue::Float(f) => Ok(*f),
            PyValue::Str(s) => py_float(s),
        }
    }

    fn str_cmp(
        x: &PyValue,
        y: &str,
        op: &str,
        f: fn(std::cmp::Ordering) -> bool,
    ) -> Result<bool, HintError> {
        match x {
            PyValue::Str(s) => Ok(f(s.as_str().cmp(y))),
            PyValue::Float(_) => Err(HintError::Type(format!(
                "'{op}' not supported between instances of 'float' and 'str'"
            ))),
        }
    }

    fn range_in(x: &PyValue, args: &[String]) -> Result<bool, HintError> {
        let x = match x {
            PyValue::Str(s) => literal_number(s)?,
            PyValue::Float(f) => {
                return Err(HintError::Value(format!("malformed node or string: {f}")));
            }
        };
        if args.len() != 4 {
            return Err(HintError::Type(
                "<range-in> operator has to be followed by 2 space separated numeric value \
                 surrounded by brackets \"range_in [ 10 20 ] \""
                    .into(),
            ));
        }
        let (lo, hi) = (py_float(&args[1])?, py_float(&args[2])?);
        if lo > hi {
            return Err(HintError::Type(
                "<range-in> operator's first argument has to be smaller or equal to the second \
                 argument EG\"range_in  ( 10 20 ] \""
                    .into(),
            ));
        }
        let lower = match args[0].as_str() {
            "[" => x >= lo,
            "(" => x > lo,
            _ => {
                return Err(HintError::Type(
                    "The first element should be an opening bracket (\"(\" or \"[\")".into(),
                ));
            }
        };
        let upper = match args[3].as_str() {
            "]" => x <= hi,
            ")" => x < hi,
            _ => {
                return Err(HintError::Type(
                    "The last element should be a closing bracket (\")\" or \"]\")".into(),
                ));
            }
        };
        Ok(lower && upper)
    }

    /// `specs_matcher.match(value, spec)`.
    pub fn matches(value: &PyValue, spec: &str) -> Result<bool, HintError> {
        let tree = parse(spec).unwrap_or_else(|_| vec![spec.to_string()]);
        if tree.len() == 1 {
            return Ok(matches!(value, PyValue::Str(s) if *s == tree[0]));
        }
        let (op, args) = (tree[0].as_str(), &tree[1..]);
        let y = args[0].as_str();
        use std::cmp::Ordering::*;
        Ok(match op {
            "=" | ">=" => to_float(value)? >= py_float(y)?,
            "!=" => to_float(value)? != py_float(y)?,
            "<=" => to_float(value)? <= py_float(y)?,
            "<" => to_float(value)? < py_float(y)?,
            "==" => to_float(value)? == py_float(y)?,
            ">" => to_float(value)? > py_float(y)?,
            "s==" => matches!(value, PyValue::Str(s) if s == y),
            "s!=" => !matches!(value, PyValue::Str(s) if s == y),
            "s<" => str_cmp(value, y, "<", |o| o == Less)?,
            "s<=" => str_cmp(value, y, "<=", |o| o != Greater)?,
            "s>" => str_cmp(value, y, ">", |o| o == Greater)?,
            "s>=" => str_cmp(value, y, ">=", |o| o != Less)?,
            "<in>" => match value {
                PyValue::Str(s) => s.contains(y),
                PyValue::Float(_) => {
                    return Err(HintError::Type("argument of type 'float' is not iterable".into()));
                }
            },
            "<or>" => args.iter().any(|a| matches!(value, PyValue::Str(s) if s == a)),
            "<range-in>" => range_in(value, args)?,
            // `<all-in>` needs the device value to be a Python list literal; URL-quoted
            // device strings and floats never are.
            "<all-in>" => {
                return Err(HintError::Type(
                    "<all-in> must compare with a list literal string, EG \"['aes', 'mmx']\""
                        .into(),
                ));
            }
            other => return Err(HintError::Value(format!("unknown operator {other}"))),
        })
    }
}

/// Python's `urllib.parse.quote(s)` (safe `/`).
pub fn url_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Python's `str(x)` for a JSON value.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

/// The operator (empty if none) and the values of a hint expression.
fn extract_operator_and_values(
    expression: &str,
    name: &str,
) -> Result<(String, Vec<String>), HintError> {
    let expr = expression.trim().to_lowercase();
    if expr.is_empty() {
        return Err(HintError::Value(format!("Root device hint {name} expression is empty")));
    }
    let tree = spec::parse(&expr)?;
    if tree.len() <= 1 {
        return Ok((String::new(), vec![expr]));
    }
    let op = tree[0].clone();
    let values =
        expr.split(op.as_str()).filter(|v| !v.is_empty()).map(|v| v.trim().to_string()).collect();
    Ok((op, values))
}

/// Lower-case, strip and URL-quote each value, keeping the operator.
pub fn normalize_expression(expression: &str, name: &str) -> Result<String, HintError> {
    let (op, values) = extract_operator_and_values(expression, name)?;
    let joined = values.iter().map(|v| format!(" {} ", url_quote(v))).collect::<Vec<_>>().join(&op);
    Ok(format!("{op}{joined}").trim().to_string())
}

/// oslo `strutils.bool_from_string(strict=True)`.
pub fn bool_from_value(v: &Value) -> Option<bool> {
    if let Value::Bool(b) = v {
        return Some(*b);
    }
    match py_str(v).trim().to_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Python's `int(str)` for hint values.
fn py_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body.is_empty()
        || body.starts_with('_')
        || body.ends_with('_')
        || body.contains("__")
        || !body.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// A parsed hint: the expression with its operator, or a boolean.
#[derive(Debug, Clone, PartialEq)]
pub enum ParsedHint {
    /// `size`: numeric expression with operator (`== 100`).
    Int(String),
    /// A normalised string expression with operator (`s== foo%20bar`).
    Str(String),
    /// `rotational`.
    Bool(bool),
}

/// Validate and normalise a hints dict. `Ok(None)` when there are no hints.
pub fn parse_root_device_hints(
    hints: &Map<String, Value>,
) -> Result<Option<Vec<(String, ParsedHint)>>, HintError> {
    if hints.is_empty() {
        return Ok(None);
    }
    let invalid: Vec<&str> =
        hints.keys().filter(|k| hint_type(k).is_none()).map(String::as_str).collect();
    if !invalid.is_empty() {
        let valid: Vec<&str> = VALID_HINTS.iter().map(|(k, _)| *k).collect();
        return Err(HintError::Value(format!(
            "The hints \"{}\" are invalid. Valid hints are: \"{}\"",
            invalid.join(", "),
            valid.join(", ")
        )));
    }
    let mut out = Vec::with_capacity(hints.len());
    for (name, expression) in hints {
        let ty = hint_type(name).unwrap_or(HintType::Str);
        let parsed = match ty {
            HintType::Str => {
                let Value::String(s) = expression else {
                    return Err(HintError::Value(format!(
                        "Root device hint \"{name}\" is not a string value. Hint expression: {}",
                        py_str(expression)
                    )));
                };
                let norm = normalize_expression(s, name)?;
                ParsedHint::Str(with_default_op(&norm, "s=="))
            }
            HintType::Int => {
                let text = py_str(expression);
                let (op, values) = extract_operator_and_values(&text, name)?;
                if op != "<range-in>" {
                    for v in &values {
                        let Some(i) = py_int(v) else {
                            return Err(HintError::Value(format!(
                                "Root device hint \"{name}\" is not an integer value. Current \
                                 value: {text}"
                            )));
                        };
                        if i <= 0 {
                            return Err(HintError::Value(format!(
                                "Root device hint \"{name}\" should be a positive integer. \
                                 Current value: {text}"
                            )));
                        }
                    }
                }
                ParsedHint::Int(with_default_op(&text, "=="))
            }
            HintType::Bool => match bool_from_value(expression) {
                Some(b) => ParsedHint::Bool(b),
                None => {
                    return Err(HintError::Value(format!(
                        "Root device hint \"{name}\" is not a Boolean value. Current value: {}",
                        py_str(expression)
                    )));
                }
            },
        };
        out.push((name.clone(), parsed));
    }
    Ok(Some(out))
}

fn with_default_op(expression: &str, op: &str) -> String {
    match spec::parse(expression) {
        Ok(t) if t.len() > 1 => expression.to_string(),
        _ => format!("{op} {expression}"),
    }
}

/// A device as the matcher sees it. In "all serial and wwn" mode (`get_os_install_device`)
/// `serials` / `wwns` hold every candidate value (lsblk, udev short, udev long), any of which
/// may match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HintDevice {
    /// The device.
    pub device: BlockDevice,
    /// All serials (None entries are ignored), when collected.
    pub serials: Option<Vec<Option<String>>>,
    /// All WWNs, when collected.
    pub wwns: Option<Vec<Option<String>>>,
}

impl From<BlockDevice> for HintDevice {
    fn from(device: BlockDevice) -> Self {
        Self { device, serials: None, wwns: None }
    }
}

enum DevStr<'a> {
    One(Option<&'a str>),
    Many(&'a [Option<String>]),
}

impl HintDevice {
    fn str_field(&self, key: &str) -> DevStr<'_> {
        let d = &self.device;
        fn lifetimes(v: &Option<String>) -> DevStr<'_> {
            DevStr::One(v.as_deref())
        }
        match key {
            "name" => DevStr::One(Some(&d.name)),
            "model" => lifetimes(&d.model),
            "vendor" => lifetimes(&d.vendor),
            "wwn_with_extension" => lifetimes(&d.wwn_with_extension),
            "wwn_vendor_extension" => lifetimes(&d.wwn_vendor_extension),
            "hctl" => lifetimes(&d.hctl),
            "by_path" => lifetimes(&d.by_path),
            "tran" => lifetimes(&d.tran),
            "serial" => match &self.serials {
                Some(v) => DevStr::Many(v),
                None => lifetimes(&d.serial),
            },
            "wwn" => match &self.wwns {
                Some(v) => DevStr::Many(v),
                None => lifetimes(&d.wwn),
            },
            _ => DevStr::One(None),
        }
    }

    fn matches(&self, hints: &[(String, ParsedHint)]) -> Result<bool, HintError> {
        use spec::PyValue;
        for (name, hint) in hints {
            let ok = match hint {
                ParsedHint::Bool(b) => self.device.rotational == *b,
                ParsedHint::Int(expr) => {
                    let gib = self.device.size as f64 / GIB as f64;
                    // Ironic's rule: `<range-in>` compares the textual float.
                    let v = if expr.starts_with("<range-in>") {
                        PyValue::Str(py_float_repr(gib))
                    } else {
                        PyValue::Float(gib)
                    };
                    spec::matches(&v, expr)?
                }
                ParsedHint::Str(expr) => match self.str_field(name) {
                    DevStr::Many(values) => {
                        let mut any = false;
                        for v in values.iter().flatten() {
                            // A value that cannot be normalised or compared is skipped.
                            let Ok(n) = normalize_expression(v, name) else { continue };
                            if let Ok(true) = spec::matches(&PyValue::Str(n), expr) {
                                any = true;
                                break;
                            }
                        }
                        any
                    }
                    DevStr::One(v) => {
                        // The reference stringifies a missing value (`str(None)`) before
                        // normalising, so it compares as "none"; an empty value skips the
                        // device.
                        let raw = v.unwrap_or("None");
                        match normalize_expression(raw, name) {
                            Ok(n) => spec::matches(&PyValue::Str(n), expr)?,
                            Err(_) => false,
                        }
                    }
                },
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Python's `repr(float)` for the values that occur here.
fn py_float_repr(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 { format!("{f:.1}") } else { format!("{f}") }
}

/// Indexes of every device matching all hints, in device order. Errors surface at the first
/// device whose evaluation fails (the reference evaluates lazily and stops at the first match
/// when only one is wanted; see [`match_root_device_hints`]).
pub fn find_devices_by_hints(
    devices: &[HintDevice],
    hints: &Map<String, Value>,
) -> Result<Vec<usize>, HintError> {
    let Some(parsed) = parse_root_device_hints(hints)? else {
        return Ok((0..devices.len()).collect());
    };
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        if d.matches(&parsed)? {
            out.push(i);
        }
    }
    Ok(out)
}

/// The first device matching all hints (lazy: devices after the first match are not looked at).
pub fn match_root_device_hints(
    devices: &[HintDevice],
    hints: &Map<String, Value>,
) -> Result<Option<usize>, HintError> {
    let Some(parsed) = parse_root_device_hints(hints)? else {
        return Ok(if devices.is_empty() { None } else { Some(0) });
    };
    for (i, d) in devices.iter().enumerate() {
        if d.matches(&parsed)? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// The no-hint default: sort by `(size, name)` and take the smallest device ≥ 4 GiB.
pub fn guess_root_disk(devices: &[BlockDevice]) -> Result<&BlockDevice, AgentError> {
    let mut sorted: Vec<&BlockDevice> = devices.iter().collect();
    sorted.sort_by(|a, b| a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)));
    sorted.into_iter().find(|d| d.size >= MIN_ROOT_SIZE).ok_or_else(|| AgentError::DeviceNotFound {
        details: format!(
            "No suitable device was found for deployment - root device hints were not \
                 provided and all found block devices are smaller than {MIN_ROOT_SIZE}B."
        ),
    })
}

/// The root-device hints of a node: `instance_info.root_device`, else `properties.root_device`
/// (falsy values skipped).
pub fn node_root_device_hints(node: &Value) -> Option<&Value> {
    let truthy = |v: &&Value| match v {
        Value::Null => false,
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Bool(b) => *b,
        Value::Number(_) => true,
    };
    node.pointer("/instance_info/root_device")
        .filter(truthy)
        .or_else(|| node.pointer("/properties/root_device").filter(truthy))
}

/// A software RAID volume known to the agent with its `is_root_volume` flag
/// (`_raid_root_device_mapping`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RaidRootVolume {
    /// The md device (`/dev/md0`).
    pub device: String,
    /// `is_root_volume`: `Some(true)` wins, `Some(false)` excludes.
    pub is_root_volume: Option<bool>,
    /// Holder disks and component partitions of the volume (excluded with it).
    pub related: Vec<String>,
}

/// `get_os_install_device` after the device list is known: RAID root volumes first, then hints
/// (first match in device order) or the size default. `hints` is the node's raw
/// `root_device` value.
pub fn select_install_device(
    devices: Vec<HintDevice>,
    hints: Option<&Value>,
    raid: &[RaidRootVolume],
) -> Result<String, AgentError> {
    let mut devices = devices;
    for vol in raid {
        match vol.is_root_volume {
            Some(true) => return Ok(vol.device.clone()),
            Some(false) => devices
                .retain(|d| d.device.name != vol.device && !vol.related.contains(&d.device.name)),
            None => {}
        }
    }
    let hints = hints.filter(|h| !matches!(h, Value::Null));
    let Some(raw) = hints else {
        let plain: Vec<BlockDevice> = devices.into_iter().map(|d| d.device).collect();
        return guess_root_disk(&plain).map(|d| d.name.clone());
    };
    let shown = python_repr(raw);
    let failed = |e: HintError| AgentError::DeviceNotFound {
        details: format!(
            "No devices could be found using the root device hints {shown} because they \
             failed to validate. Error: {e}"
        ),
    };
    let map = match raw {
        Value::Object(m) => m.clone(),
        other => {
            return Err(failed(HintError::Type(format!(
                "'{}' object is not a mapping",
                python_type(other)
            ))));
        }
    };
    match match_root_device_hints(&devices, &map).map_err(failed)? {
        Some(i) => Ok(devices[i].device.name.clone()),
        None => Err(AgentError::DeviceNotFound {
            details: format!(
                "No suitable device was found for deployment using these hints {shown}"
            ),
        }),
    }
}

fn python_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// `get_skip_list_from_node_for_disks`: names of devices matched by any
/// `properties.skip_block_devices` entry without `volume_name`. `None` when there are no skip
/// hints or no devices. A bad hint is a `ValueError` (not `DeviceNotFound`), as in the
/// reference.
pub fn skip_list_for_disks(
    node: &Value,
    devices: &[HintDevice],
) -> Result<Option<BTreeSet<String>>, AgentError> {
    let Some(hints) = skip_hints(node) else { return Ok(None) };
    if devices.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for hint in hints {
        let Value::Object(map) = hint else {
            return Err(AgentError::internal(
                "TypeError",
                format!("skip_block_devices entries must be objects, got {}", python_repr(hint)),
            ));
        };
        if map.contains_key("volume_name") {
            continue;
        }
        let found = find_devices_by_hints(devices, map).map_err(|e| {
            AgentError::internal(
                match e {
                    HintError::Type(_) => "TypeError",
                    _ => "ValueError",
                },
                e.to_string(),
            )
        })?;
        for i in found {
            if out.insert(devices[i].device.name.clone()) {
                tracing::warn!(hint = %python_repr(hint), device = %devices[i].device.name,
                    "skipping device per skip_block_devices");
            }
        }
    }
    Ok(Some(out))
}

/// `get_skip_list_from_node_for_raids`: the `volume_name`s in `skip_block_devices`, or `None`.
pub fn skip_list_for_raids(node: &Value) -> Option<BTreeSet<String>> {
    let names: BTreeSet<String> =
        skip_hints(node)?.iter().filter_map(|h| h.get("volume_name")).map(py_str).collect();
    if names.is_empty() { None } else { Some(names) }
}

fn skip_hints(node: &Value) -> Option<&Vec<Value>> {
    node.pointer("/properties/skip_block_devices")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests;
