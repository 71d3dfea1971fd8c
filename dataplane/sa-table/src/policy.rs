//! The compiled outbound policy index: tuple-space search.
//!
//! Policies are grouped into classes by (family, source prefix length,
//! destination prefix length), classes are ordered from the most specific
//! (longest destination, then longest source prefix) down, and within a
//! class a hash table maps the masked (source, destination) pair to the few
//! policies sharing it, ordered by protocol/port specificity and priority.
//! A lookup probes one hash bucket per class until a class yields a match:
//! its cost grows with the number of distinct prefix-length pairs, never with
//! the number of policies.
//!
//! The index is a flat array of words, built privately by the writer and
//! copied into the inactive half of the shared mapping before a flip.
//!
//! ```text
//! words[0..8]                 nclasses, nentries, table_mask, reserved
//! words[8..8+MAX_CLASSES]     family | src_len << 8 | dst_len << 16
//! table (6 words a bucket)    class+1 | count << 32, first entry, src (2), dst (2)
//! entries (3 words each)      policy id | proto << 32 | has_proto << 40 | action << 48,
//!                             src lo | src hi << 16 | dst lo << 32 | dst hi << 48, priority
//! ```

use crate::config::{addr_to_u128, mask, Action, FlowKey, Policy};
use crate::layout::{table_size, MAX_POLICY_CLASSES};

const CLASSES: usize = 8;

fn table_off() -> usize {
    CLASSES + MAX_POLICY_CLASSES
}

fn hash(class: usize, src: u128, dst: u128) -> u64 {
    let x = (src as u64)
        ^ ((src >> 64) as u64).rotate_left(17)
        ^ (dst as u64).rotate_left(31)
        ^ ((dst >> 64) as u64).rotate_left(47)
        ^ (class as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

fn action_code(a: Action) -> u64 {
    match a {
        Action::Protect => 1,
        Action::Bypass => 2,
        Action::Drop => 3,
    }
}

fn action_of(code: u64) -> Action {
    match code {
        1 => Action::Protect,
        2 => Action::Bypass,
        _ => Action::Drop,
    }
}

/// Why the index could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CompileError {
    TooManyClasses(usize),
    TooManyPolicies(usize),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::TooManyClasses(n) => write!(
                f,
                "{n} distinct (family, source length, destination length) classes, at most {MAX_POLICY_CLASSES}"
            ),
            CompileError::TooManyPolicies(n) => write!(f, "{n} policies exceed the capacity"),
        }
    }
}

/// Builds the index words for `policies` (id, policy) in a half sized for
/// `capacity` policies.
pub(crate) fn compile(
    policies: &[(u32, Policy)],
    capacity: usize,
    words: usize,
) -> Result<Vec<u64>, CompileError> {
    if policies.len() > capacity {
        return Err(CompileError::TooManyPolicies(policies.len()));
    }
    let mut out = vec![0u64; words];
    let class_key = |p: &Policy| {
        let (fam, _) = addr_to_u128(p.src.addr);
        (fam, p.src.len, p.dst.len)
    };
    let mut classes: Vec<(u8, u8, u8)> = policies.iter().map(|(_, p)| class_key(p)).collect();
    classes.sort_unstable_by_key(|c| std::cmp::Reverse((c.2, c.1, c.0)));
    classes.dedup();
    if classes.len() > MAX_POLICY_CLASSES {
        return Err(CompileError::TooManyClasses(classes.len()));
    }
    // Entries grouped by (class, masked src, masked dst), most specific first.
    let mut rows: Vec<(usize, u128, u128, &Policy, u32)> = policies
        .iter()
        .map(|(id, p)| {
            let k = class_key(p);
            let c = classes.iter().position(|x| *x == k).unwrap_or(0);
            let (fam, s) = addr_to_u128(p.src.addr);
            let (_, d) = addr_to_u128(p.dst.addr);
            (
                c,
                s & mask(fam, p.src.len),
                d & mask(fam, p.dst.len),
                p,
                *id,
            )
        })
        .collect();
    rows.sort_by(|a, b| {
        (a.0, a.1, a.2)
            .cmp(&(b.0, b.1, b.2))
            .then_with(|| b.3.specificity().cmp(&a.3.specificity()))
    });
    let tsize = table_size(capacity);
    let toff = table_off();
    let eoff = toff + 6 * tsize;
    out[0] = classes.len() as u64;
    out[1] = rows.len() as u64;
    out[2] = (tsize - 1) as u64;
    for (i, (fam, sl, dl)) in classes.iter().enumerate() {
        out[CLASSES + i] = u64::from(*fam) | (u64::from(*sl) << 8) | (u64::from(*dl) << 16);
    }
    let mut i = 0;
    while i < rows.len() {
        let (c, s, d, _, _) = rows[i];
        let mut j = i;
        while j < rows.len() && (rows[j].0, rows[j].1, rows[j].2) == (c, s, d) {
            let p = rows[j].3;
            let e = eoff + 3 * j;
            out[e] = u64::from(rows[j].4)
                | (u64::from(p.proto.unwrap_or(0)) << 32)
                | (u64::from(p.proto.is_some()) << 40)
                | (action_code(p.action) << 48);
            out[e + 1] = u64::from(p.src_ports.0)
                | (u64::from(p.src_ports.1) << 16)
                | (u64::from(p.dst_ports.0) << 32)
                | (u64::from(p.dst_ports.1) << 48);
            out[e + 2] = u64::from(p.priority);
            j += 1;
        }
        let mut b = (hash(c, s, d) as usize) & (tsize - 1);
        while out[toff + 6 * b] != 0 {
            b = (b + 1) & (tsize - 1);
        }
        let w = toff + 6 * b;
        out[w] = (c as u64 + 1) | (((j - i) as u64) << 32);
        out[w + 1] = i as u64;
        out[w + 2] = s as u64;
        out[w + 3] = (s >> 64) as u64;
        out[w + 4] = d as u64;
        out[w + 5] = (d >> 64) as u64;
        i = j;
    }
    Ok(out)
}

/// The most specific policy matching `f`: (policy id, action). `word(i)`
/// reads word `i` of a compiled index (out-of-range reads return 0).
pub(crate) fn lookup(word: impl Fn(usize) -> u64, f: &FlowKey) -> Option<(u32, Action)> {
    let nclasses = (word(0) as usize).min(MAX_POLICY_CLASSES);
    let tmask = word(2) as usize;
    let toff = table_off();
    let eoff = toff + 6 * (tmask + 1);
    let (fam, src) = addr_to_u128(f.src);
    let (dfam, dst) = addr_to_u128(f.dst);
    if fam != dfam {
        return None;
    }
    for c in 0..nclasses {
        let cw = word(CLASSES + c);
        if cw as u8 != fam {
            continue;
        }
        let (sl, dl) = ((cw >> 8) as u8, (cw >> 16) as u8);
        let s = src & mask(fam, sl);
        let d = dst & mask(fam, dl);
        let mut b = (hash(c, s, d) as usize) & tmask;
        for _ in 0..=tmask {
            let w = toff + 6 * b;
            let head = word(w);
            if head == 0 {
                break;
            }
            let bs = u128::from(word(w + 2)) | (u128::from(word(w + 3)) << 64);
            let bd = u128::from(word(w + 4)) | (u128::from(word(w + 5)) << 64);
            if (head as u32) as usize == c + 1 && bs == s && bd == d {
                let first = word(w + 1) as usize;
                let count = (head >> 32) as usize;
                for e in first..first.saturating_add(count).min(first + 65_536) {
                    let e0 = word(eoff + 3 * e);
                    let ports = word(eoff + 3 * e + 1);
                    let proto_ok = (e0 >> 40) & 1 == 0 || ((e0 >> 32) as u8) == f.proto;
                    let sp = (ports as u16, (ports >> 16) as u16);
                    let dp = ((ports >> 32) as u16, (ports >> 48) as u16);
                    if proto_ok
                        && (sp.0..=sp.1).contains(&f.src_port)
                        && (dp.0..=dp.1).contains(&f.dst_port)
                    {
                        return Some((e0 as u32, action_of((e0 >> 48) & 0xff)));
                    }
                }
                break;
            }
            b = (b + 1) & tmask;
        }
    }
    None
}
