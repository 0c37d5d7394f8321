//! The equations a checkpoint's tensors give for a zoo class, and their
//! solution for one unknown field at a time (inference, in `infer.rs`,
//! picks the class and keeps solving until nothing more follows): the
//! shape a described key has in the checkpoint (a `#` part matching any
//! layer index, a digit part itself), a list's layer count and split
//! index from the indices under it, and a field's value from a formula
//! linear in it, dividing by it, or growing with it (a square, a floor
//! division, where a range of values may fit).

use super::formula::Formula;
use super::infer::ASSUMED;
use super::infer::{pattern_of, walk};
use super::{checks, entries, field_name};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde_json::Value;

/// A list's equations. Its layer count: a repeat under `prefix` has as
/// many layers as the checkpoint has distinct indices there, less the first
/// and last items. Its split index, when its layers are of two kinds: the
/// first layer with a key only the second kind has (an expert's) is where
/// the kind changes, less the first items; a checkpoint with no layer of
/// the second kind gives only a least value, so no equation. Only lists at
/// a concrete place count (one inside another repeat's layers would mix the
/// layers of all).
pub(super) fn list_equations(
    node: &'static Value,
    prefix: &str,
    names_shapes: &[(String, Vec<u64>)],
) -> Vec<(&'static str, u64, String)> {
    let mut equations = Vec::new();
    let Some(formula) = node.get("repeat").and_then(Value::as_str) else {
        return equations;
    };
    if prefix.contains('#') {
        return equations;
    }
    let first_items = entries(node, "items").count() as u64;
    let own_items = first_items + entries(node, "last").count() as u64;
    let indices: HashSet<u64> = layer_keys(prefix, names_shapes)
        .map(|(index, _)| index)
        .collect();
    let layers = indices.len() as u64;
    if layers >= own_items {
        equations.push((
            formula,
            layers - own_items,
            format!("{layers} layers under {prefix}"),
        ));
    }
    let Some(split) = node.get("split").and_then(Value::as_str) else {
        return equations;
    };
    let keys_of = |kind: &str| {
        let mut keys = HashSet::default();
        if let Some(body) = node.get(kind) {
            walk(body, "", &mut |key, _| {
                keys.insert(key);
            });
        }
        keys
    };
    let first_kind = keys_of("body");
    let second_only: HashSet<String> = keys_of("rest")
        .into_iter()
        .filter(|key| !first_kind.contains(key))
        .collect();
    let first_of_second_kind = layer_keys(prefix, names_shapes)
        .filter(|(_, key)| second_only.contains(&pattern_of(key)))
        .map(|(index, _)| index)
        .min();
    if let Some(at) = first_of_second_kind.filter(|at| *at >= first_items) {
        equations.push((
            split,
            at - first_items,
            format!("layer {at} under {prefix} is the first of its kind"),
        ));
    }
    equations
}

/// The shape of the first checkpoint key that `key` names: a `#` part
/// stands for any layer index, and a digit part stays itself. Swin's
/// `encoder.layers.1.blocks.#.attention...` is read off stage 1's first
/// block, not stage 0's: the stages are items of their own, with widths
/// and head counts of their own (`num_heads.1`).
pub(super) fn first_matching<'a>(
    key: &str,
    by_pattern: &HashMap<String, Vec<&'a (String, Vec<u64>)>>,
) -> Option<&'a Vec<u64>> {
    // The keys of one pattern differ only in their indices.
    let wanted: Vec<&str> = key.split('.').collect();
    by_pattern
        .get(&pattern_of(key))?
        .iter()
        .find(|(name, _)| {
            name.split('.')
                .zip(&wanted)
                .all(|(part, want)| *want == "#" || part == *want)
        })
        .map(|(_, shape)| shape)
}

/// The checkpoint's keys under a list at `prefix`: each layer's index and
/// the rest of its key.
fn layer_keys<'a>(
    prefix: &'a str,
    names_shapes: &'a [(String, Vec<u64>)],
) -> impl Iterator<Item = (u64, &'a str)> + 'a {
    names_shapes.iter().filter_map(move |(name, _)| {
        let rest = name.strip_prefix(prefix)?;
        // A list of tensors (a ParameterList) has keys that end at the index.
        let (index, key) = rest.split_once('.').unwrap_or((rest, ""));
        Some((index.parse::<u64>().ok()?, key))
    })
}

/// The formula's value with `field` at `x` and the known fields at theirs.
fn evaluate_at(
    formula: &Formula,
    field: &str,
    x: u64,
    known: &[(&str, u64, String)],
) -> Option<u64> {
    formula.value_of(&|name| {
        if name == field {
            Some(x)
        } else {
            known
                .iter()
                .find(|(k, _, _)| *k == name)
                .map(|(_, v, _)| *v)
        }
    })
}

/// What the search for one field's value found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Search {
    /// One value gives the size.
    Solved(u64),
    /// Several values give it: it settles nothing alone.
    Several,
    /// The values were searched and none gives it.
    NoValue,
    /// Not linear in the field and whole at every value, so not searched
    /// (a formula that grows with it is bisected instead).
    NotSearched,
}

/// The value of `field` that makes `formula` give `value`, when the
/// formula is linear in it: g(f) = g(0) + f * (g(s) - g(0)) / s for the
/// first step s where g is whole, checked.
pub(super) fn solve_one(
    formula: &Formula,
    field: &str,
    value: u64,
    known: &[(&str, u64, String)],
) -> Option<u64> {
    match search_one(formula, field, value, known) {
        Search::Solved(solution) => Some(solution),
        _ => None,
    }
}

/// As `solve_one`, saying why no value was found, so a size several values
/// give is kept for intersection without searching its values again.
pub(super) fn search_one(
    formula: &Formula,
    field: &str,
    value: u64,
    known: &[(&str, u64, String)],
) -> Search {
    let at = |x: u64| evaluate_at(formula, field, x, known);
    // Divides by the field (a head count), or not whole at 1: the values
    // that give a whole size are tried instead. Only one may give it: a
    // size several values give (LFM2's query width
    // `hidden_size//num_attention_heads*num_attention_heads` is 1280 for 1
    // head as for 16) settles nothing, and the field is left to another
    // shape (its 80-wide key norm).
    let search = || match first_solution(&at, value) {
        (Some(first), false) => Search::Solved(first),
        (Some(_), true) => Search::Several,
        (None, _) => Search::NoValue,
    };
    let Some(zero) = at(0) else {
        return search();
    };
    // Linear in the field, growing (a width) or shrinking (Ovis2's vision
    // head, its vocabulary less the indicator tokens), with a slope that
    // may be a fraction (LFM2's feed-forward, two thirds of
    // `intermediate_size`): from the first step that gives a whole size.
    let whole_at_one = at(1).is_some();
    let linear = (1..=64)
        .find_map(|step| Some((step, at(step)?)))
        .and_then(|(step, at_step)| {
            if at_step > zero {
                value
                    .checked_sub(zero)?
                    .checked_mul(step)?
                    .checked_div(at_step - zero)
            } else {
                zero.checked_sub(value)?
                    .checked_mul(step)?
                    .checked_div(zero.checked_sub(at_step)?)
            }
        })
        .filter(|solution| at(*solution) == Some(value));
    match linear {
        Some(solution) => Search::Solved(solution),
        None if whole_at_one => Search::NotSearched,
        // A square over a patch size (an image size) is whole only at
        // some values.
        None => search(),
    }
}

/// For a size the library rounds (LFM2's feed-forward, `int(2 *
/// intermediate_size / 3)` rounded up to 256), whose range of values of
/// `field` from `solution` to `last` all give `value`: the least at which
/// the rounding does nothing (6912 for 4608 rows), as a config.json would
/// write it. None for any other formula, or where no value in the range
/// (searched up to 2^16 past its start) gives the size unrounded.
pub(super) fn unrounded_solution(
    formula: &Formula,
    field: &str,
    value: u64,
    known: &[(&str, u64, String)],
    (solution, last): (u64, u64),
) -> Option<u64> {
    if !formula.is_rounded() || last <= solution {
        return None;
    }
    (solution..=last.min(solution.saturating_add(1 << 16))).find(|x| {
        formula.unrounded_value_of(&|name| {
            if name == field {
                Some(*x)
            } else {
                known
                    .iter()
                    .find(|(k, _, _)| *k == name)
                    .map(|(_, v, _)| *v)
            }
        }) == Some(value)
    })
}

/// The values of `field` that make a formula that grows with it give
/// `value`, as the least and the greatest, when the formula is not linear
/// in it: a square (SD3's `pos_embed_max_size`), a floor division (an
/// image size over a patch size). Found by bisection within 2^20; `None`
/// when no value gives it, or the formula falls somewhere on the way.
pub(super) fn solve_increasing(
    formula: &Formula,
    field: &str,
    value: u64,
    known: &[(&str, u64, String)],
) -> Option<(u64, u64)> {
    const LIMIT: u64 = 1 << 20;
    let at = |x: u64| evaluate_at(formula, field, x, known);
    // The least x with at(x) >= value, and the least with at(x) > value.
    let least_reaching = |target: u64, strictly: bool| {
        let reaches =
            |x: u64| at(x).is_some_and(|got| got > target || (!strictly && got == target));
        let mut high = 1;
        while !reaches(high) {
            high = high.checked_mul(2).filter(|h| *h <= LIMIT)?;
        }
        let mut low = 0;
        while low < high {
            let middle = low + (high - low) / 2;
            if reaches(middle) {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Some(low)
    };
    let first = least_reaching(value, false)?;
    if at(first) != Some(value) {
        return None;
    }
    let last = least_reaching(value, true).map_or(LIMIT, |past| past - 1);
    // Every value between gives it, checked at the ends and the middle
    // (a formula that is not monotone in the field is not solved here).
    let middle = first + (last - first) / 2;
    [first, middle, last]
        .iter()
        .all(|x| at(*x) == Some(value))
        .then_some((first, last))
}

/// The least value up to 4096 that gives `value`, and whether another
/// within the next 64 does too (a floor quotient's values sit together:
/// `1280//heads` is 20 for 62, 63 and 64 heads, `1280//heads*heads` is 1280
/// for every divisor); looking no further keeps a size with one solution
/// as cheap as before.
fn first_solution(at: &impl Fn(u64) -> Option<u64>, value: u64) -> (Option<u64>, bool) {
    let Some(first) = (1..=4096).find(|x| at(*x) == Some(value)) else {
        return (None, false);
    };
    let another = (first + 1..=(first + 64).min(4096)).any(|x| at(x) == Some(value));
    (Some(first), another)
}

/// The values of a field each of several sizes allows where none alone
/// settles it (LFM2's query width `hidden_size//num_attention_heads*num_attention_heads`
/// is 1280 for 1, 2, 4, … 64 heads, its key norm `hidden_size//num_attention_heads`
/// 20 for 62 to 64): the one value all allow is the field's.
#[derive(Default)]
pub(super) struct Candidates {
    by_field: Vec<(String, Vec<u64>, Vec<String>)>,
}

impl Candidates {
    /// The values up to 4096 that give `value`, kept for `field` when
    /// several do (`searched`: what `search_one` found; an equation no
    /// value solves is no evidence).
    pub(super) fn add(
        &mut self,
        field: &str,
        formula: &Formula,
        (value, searched): (u64, Search),
        evidence: &str,
        known: &[(&str, u64, String)],
    ) {
        let at = |x: u64| evaluate_at(formula, field, x, known);
        // The whole range is read only for a size several values give
        // (most have one solution or none); a size the linear step did not
        // search is searched here, once.
        let several = match searched {
            Search::Several => true,
            Search::NotSearched => matches!(first_solution(&at, value), (Some(_), true)),
            Search::Solved(_) | Search::NoValue => false,
        };
        if !several {
            return;
        }
        let values: Vec<u64> = (1..=4096).filter(|x| at(*x) == Some(value)).collect();
        match self.by_field.iter_mut().find(|(name, _, _)| name == field) {
            Some((_, allowed, evidence_so_far)) => {
                allowed.retain(|x| values.contains(x));
                evidence_so_far.push(evidence.to_string());
            }
            None => self
                .by_field
                .push((field.to_string(), values, vec![evidence.to_string()])),
        }
    }

    /// Each field two or more sizes narrow to one value becomes known;
    /// whether any did.
    pub(super) fn settle(
        &mut self,
        desc: &'static Value,
        known: &mut Vec<(&'static str, u64, String)>,
    ) -> bool {
        let mut settled = false;
        for (field, allowed, evidence) in std::mem::take(&mut self.by_field) {
            let name = field_name(desc, &field);
            if let ([value], [_, _, ..]) = (allowed.as_slice(), evidence.as_slice()) {
                if !name.is_empty() && !known.iter().any(|(k, _, _)| *k == name) {
                    known.push((name, *value, evidence.join(" and ")));
                    settled = true;
                    continue;
                }
            }
            self.by_field.push((field, allowed, evidence));
        }
        settled
    }
}

/// Where no equation has one unknown left, only ratios are shown
/// (`num_key_value_heads / num_attention_heads` sizes k_proj): the default
/// for the one field the shapes cannot separate that lets the most sizes
/// solve is pushed to `known` and said in `assumed`, so inference solves
/// on; false where there is none. The default first; when it does not
/// divide what the shapes show (Gemma 2's `head_dim` 256 against 640
/// key/value features), its halvings, so a head size of 128 or 64 is
/// found rather than the class given up. A value counts the sizes it
/// leaves with no solution against it; where every such value leaves
/// some, each smaller one is tried (AST's 12 heads against a width of 32,
/// which its heads only split: 8 heads of 4 give the shapes).
pub(super) fn assume_for_stuck(
    desc: &'static Value,
    stuck: Vec<&'static str>,
    equations: &[(&'static str, u64, String)],
    settled: &[bool],
    known: &mut Vec<(&'static str, u64, String)>,
    assumed: &mut Vec<String>,
) -> bool {
    let stuck_fields: Vec<(&'static str, u64)> = checks::assumable(desc, stuck)
        .into_iter()
        .take(8)
        .filter_map(|field| Some((field, desc["fields"][field]["default"].as_u64()?)))
        .collect();
    let mut candidates: Vec<(&'static str, u64)> = Vec::new();
    for (field, default) in &stuck_fields {
        let mut value = *default;
        while value > 0 && candidates.len() < 8 * 16 {
            candidates.push((field, value));
            if value % 2 != 0 {
                break;
            }
            value /= 2;
        }
    }
    let open: Vec<(Formula, u64)> = equations
        .iter()
        .zip(settled)
        .filter(|(_, settled)| !**settled)
        .filter_map(|((text, value, _), _)| Some((Formula::parse(text).ok()?, *value)))
        .collect();
    // (sizes that then solve, sizes that then have no solution).
    let tally = |candidate: (&'static str, u64)| {
        let mut trial: Vec<(&str, u64, String)> = known.clone();
        trial.push((candidate.0, candidate.1, String::new()));
        let (mut solvable, mut unsolvable) = (0i64, 0i64);
        for (formula, value) in &open {
            let fields = formula.fields();
            let unknown: Vec<&str> = fields
                .iter()
                .copied()
                .filter(|f| !trial.iter().any(|(k, _, _)| k == f))
                .collect();
            match unknown.as_slice() {
                // A floor quotient solves to a range (Parakeet's mel bins).
                [one]
                    if solve_one(formula, one, *value, &trial).is_some()
                        || solve_increasing(formula, one, *value, &trial).is_some() =>
                {
                    solvable += 1
                }
                [_] => unsolvable += 1,
                [] if fields.contains(&candidate.0)
                    && evaluate_at(formula, candidate.0, candidate.1, &trial) != Some(*value) =>
                {
                    unsolvable += 1
                }
                _ => {}
            }
        }
        (solvable, unsolvable)
    };
    let best = |candidates: &[(&'static str, u64)]| {
        candidates
            .iter()
            .map(|candidate| (*candidate, tally(*candidate)))
            .max_by_key(|((field, value), (solvable, unsolvable))| {
                (
                    solvable - unsolvable,
                    *solvable,
                    std::cmp::Reverse(*field),
                    *value,
                )
            })
    };
    let mut chosen = best(&candidates);
    if chosen.is_some_and(|(_, (_, unsolvable))| unsolvable > 0) {
        let smaller: Vec<(&'static str, u64)> = stuck_fields
            .iter()
            .flat_map(|(field, default)| (1..*default.min(&65)).rev().map(move |v| (*field, v)))
            .filter(|candidate| !candidates.contains(candidate))
            .collect();
        candidates.extend(smaller);
        chosen = best(&candidates);
    }
    if chosen.is_none_or(|(_, (solvable, _))| solvable == 0) {
        // No one value lets a size solve (AST's position table holds the
        // mel bins, the frame count and both strides): the defaults of all
        // but one of a size's fields, where that one then solves (the
        // frame count, 128 mel bins and strides of 10 giving 12 rows of
        // patches).
        if let Some(defaults) = all_but_one_at_defaults(&open, &stuck_fields, known) {
            for (field, default) in defaults {
                assumed.push(format!(
                    "{field}: the shapes show it only together with other fields; the default {default} is assumed"
                ));
                known.push((field, default, format!("{ASSUMED} default")));
            }
            return true;
        }
    }
    let Some(((field, value), _)) = chosen else {
        return false;
    };
    let default = desc["fields"][field]["default"].as_u64().unwrap_or(value);
    if value == default {
        assumed.push(format!(
            "{field}: the shapes show it only together with other fields; the default {default} is assumed"
        ));
        known.push((field, value, format!("{ASSUMED} default")));
    } else {
        assumed.push(format!(
            "{field}: the shapes show it only together with other fields, and not as a multiple of the default {default}; {value} is assumed"
        ));
        known.push((field, value, format!("{ASSUMED} {field}")));
    }
    true
}

/// For the first open size whose unknown fields all have defaults, those
/// defaults but one, where that one then solves the size; the first such
/// field in the formula's order is left to solve.
fn all_but_one_at_defaults(
    open: &[(Formula, u64)],
    stuck_fields: &[(&'static str, u64)],
    known: &[(&'static str, u64, String)],
) -> Option<Vec<(&'static str, u64)>> {
    for (formula, value) in open {
        let unknown: Vec<(&'static str, u64)> = formula
            .fields()
            .into_iter()
            .filter(|f| !known.iter().any(|(k, _, _)| k == f))
            .map(|f| stuck_fields.iter().find(|(s, _)| *s == f).copied())
            .collect::<Option<_>>()?;
        if unknown.len() < 2 {
            continue;
        }
        for (free, _) in &unknown {
            let others: Vec<(&'static str, u64)> =
                unknown.iter().copied().filter(|(f, _)| f != free).collect();
            let mut trial: Vec<(&str, u64, String)> = known.to_vec();
            trial.extend(others.iter().map(|(f, v)| (*f, *v, String::new())));
            if solve_one(formula, free, *value, &trial).is_some()
                || solve_increasing(formula, free, *value, &trial).is_some()
            {
                return Some(others);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A size growing with the field and one shrinking with it (Ovis2's
    /// vision head: the vocabulary less the indicator tokens) both solve;
    /// a value no whole field gives does not.
    #[test]
    fn linear_sizes_solve_for_their_one_unknown_field() {
        let known = [("vocab_size", 8192, String::new())];
        let growing = Formula::parse("2*hidden_size+1").unwrap();
        assert_eq!(solve_one(&growing, "hidden_size", 129, &known), Some(64));
        assert_eq!(solve_one(&growing, "hidden_size", 128, &known), None);
        let shrinking = Formula::parse("-1*indicators+vocab_size").unwrap();
        assert_eq!(solve_one(&shrinking, "indicators", 8182, &known), Some(10));
        assert_eq!(solve_one(&shrinking, "indicators", 8200, &known), None);
        let fraction = Formula::parse("2*intermediate_size/3").unwrap();
        assert_eq!(
            solve_one(&fraction, "intermediate_size", 16384, &known),
            Some(24576)
        );
        let rounded = Formula::parse("ceil_to(2*intermediate_size/3,256)").unwrap();
        let range = solve_increasing(&rounded, "intermediate_size", 4608, &known);
        assert_eq!(range, Some((6530, 6913)));
        let taken = unrounded_solution(&rounded, "intermediate_size", 4608, &known, (6530, 6913));
        assert_eq!(taken, Some(6912));
        assert_eq!(
            unrounded_solution(&fraction, "intermediate_size", 16384, &known, (1, 9)),
            None
        );
        assert_eq!(
            solve_one(&fraction, "intermediate_size", 16385, &known),
            None
        );
    }

    /// A size several values give settles nothing alone and says so (the
    /// values are kept for intersection); a whole, non-linear size is left
    /// for bisection unsearched.
    #[test]
    fn sizes_several_values_give_are_told_apart_from_unsolved_ones() {
        let known = [("hidden_size", 1280, String::new())];
        let width = Formula::parse("hidden_size//heads*heads").unwrap();
        assert_eq!(search_one(&width, "heads", 1280, &known), Search::Several);
        let head = Formula::parse("hidden_size//heads").unwrap();
        assert_eq!(search_one(&head, "heads", 20, &known), Search::Several);
        assert_eq!(search_one(&head, "heads", 640, &known), Search::Solved(2));
        assert_eq!(search_one(&head, "heads", 5000, &known), Search::NoValue);
        let square = Formula::parse("side*side").unwrap();
        assert_eq!(
            search_one(&square, "side", 1024, &known),
            Search::NotSearched
        );
        assert_eq!(
            solve_increasing(&square, "side", 1024, &known),
            Some((32, 32))
        );
    }

    /// AST's position table holds four fields: at the defaults of all but
    /// one the first that then solves is left to solve (the mel bins at
    /// 128 and strides of 10 leave 12 frame patches: 126 to 135 frames);
    /// a size whose fields have no defaults gives nothing.
    #[test]
    fn all_but_one_field_of_a_stuck_size_take_their_defaults() {
        let text = "((num_mel_bins-16)//frequency_stride+1)*((max_length-16)//time_stride+1)+2";
        let stuck = [
            ("num_mel_bins", 128),
            ("max_length", 1024),
            ("frequency_stride", 10),
            ("time_stride", 10),
        ];
        let open = [(Formula::parse(text).unwrap(), 146)];
        assert_eq!(
            all_but_one_at_defaults(&open, &stuck, &[]),
            Some(vec![
                ("num_mel_bins", 128),
                ("frequency_stride", 10),
                ("time_stride", 10)
            ])
        );
        let known = [
            ("num_mel_bins", 128, String::new()),
            ("frequency_stride", 10, String::new()),
            ("time_stride", 10, String::new()),
        ];
        assert_eq!(
            solve_increasing(&open[0].0, "max_length", 146, &known),
            Some((126, 135))
        );
        assert_eq!(all_but_one_at_defaults(&open, &stuck[..2], &[]), None);
    }
}
