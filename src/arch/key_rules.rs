//! What transformers' `from_pretrained` does to checkpoint keys, as data
//! for the `hf` loader and for inference: key renames and prefix changes
//! (conversion_mapping.py) with the exact rule of their match, weight
//! merges, tied weights and the unexpected keys it ignores.

use super::zoo;

/// What transformers' `from_pretrained` knows of a model class, as data the
/// `hf` loader applies: key renames (conversion_mapping.py), the base-model
/// prefix, tied weights and the unexpected keys it ignores.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PretrainedClass {
    pub renames: Vec<KeyRename>,
    pub base_model_prefix: String,
    /// `(target, source)` from `all_tied_weights_keys`.
    pub tied: Vec<(String, String)>,
    pub ignore_unexpected: Vec<IgnoreKey>,
    /// Converters that merge per-expert checkpoint weights into one tensor
    /// (a zoo class's conversion mapping: Mixtral, Qwen2-MoE ...).
    pub merges: Vec<WeightMerge>,
    /// Transforms of the class's conversion mapping ckptcheck does not
    /// model, for a note that the verdict around them is not exact.
    pub unmodeled: Vec<String>,
}

/// transformers' `WeightConverter` as far as it changes keys and shapes:
/// checkpoint keys matching each source (`*` is an expert index) become one
/// `target` key, each source's tensors stacked (`MergeModulelist`), the
/// sources then joined (`Concatenate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightMerge {
    pub sources: Vec<&'static str>,
    pub target: &'static str,
    /// `Some(dim)`: the stacked sources are concatenated along `dim`.
    pub concatenate: Option<usize>,
}

/// One of conversion_mapping.py's key transforms, with its match written as
/// an exact rule: `find` is literal text (the Python patterns' `.` only ever
/// meets a dot in real keys), `at_start` is the pattern's `^`, and a `find`
/// ending in a letter or digit must not be followed by a word character
/// (transformers appends `(?!\w)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRename {
    pub action: RenameAction,
    pub scope: Option<RenameScope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameAction {
    /// `WeightRenaming(source, target)`: the first occurrence of the
    /// matched text becomes `replace`.
    Rename {
        find: &'static str,
        replace: &'static str,
        at_start: bool,
    },
    /// `PrefixChange(prefix_to_remove=P)`: `P.rest` becomes `rest`.
    RemovePrefix { prefix: &'static str },
    /// `WeightRenaming("A(\d+)B", "C\1D")`: the first `A<digits>B`
    /// becomes `C<digits>D` (DETR's `layers.(\d+).fc1` ->
    /// `layers.\1.mlp.fc1`).
    RenameNumbered {
        before: &'static str,
        after: &'static str,
        replace_before: &'static str,
        replace_after: &'static str,
        at_start: bool,
    },
}

/// transformers' `WeightTransform.scope_prefix` with the model's
/// `base_model_prefix`: a transform registered for a sub-model only sees
/// keys under it (with or without the base-model prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenameScope {
    pub scope: &'static str,
    pub base_model_prefix: &'static str,
}

impl KeyRename {
    pub const fn rename(find: &'static str, replace: &'static str) -> KeyRename {
        KeyRename {
            action: RenameAction::Rename {
                find,
                replace,
                at_start: false,
            },
            scope: None,
        }
    }

    pub const fn rename_at_start(find: &'static str, replace: &'static str) -> KeyRename {
        KeyRename {
            action: RenameAction::Rename {
                find,
                replace,
                at_start: true,
            },
            scope: None,
        }
    }

    pub const fn rename_numbered(
        (before, after): (&'static str, &'static str),
        (replace_before, replace_after): (&'static str, &'static str),
        at_start: bool,
    ) -> KeyRename {
        KeyRename {
            action: RenameAction::RenameNumbered {
                before,
                after,
                replace_before,
                replace_after,
                at_start,
            },
            scope: None,
        }
    }

    pub const fn remove_prefix(prefix: &'static str) -> KeyRename {
        KeyRename {
            action: RenameAction::RemovePrefix { prefix },
            scope: None,
        }
    }

    pub const fn within(mut self, scope: Option<RenameScope>) -> KeyRename {
        self.scope = scope;
        self
    }
}

/// `WeightTransform._scoped_match`: the prefix consumed and the rest.
fn scoped_key(key: &str, scope: Option<RenameScope>) -> Option<(String, &str)> {
    let Some(scope) = scope else {
        return Some((String::new(), key));
    };
    let scope_prefix = if scope.scope.is_empty() {
        String::new()
    } else {
        format!("{}.", scope.scope)
    };
    let base = if scope.base_model_prefix.is_empty() {
        String::new()
    } else {
        format!("{}.", scope.base_model_prefix)
    };
    let longest = format!("{base}{scope_prefix}");
    if let Some(rest) = key.strip_prefix(longest.as_str()) {
        Some((longest, rest))
    } else {
        key.strip_prefix(scope_prefix.as_str())
            .map(|rest| (scope_prefix, rest))
    }
}

/// The text of the first match of `before(\d+)after` in `text` as
/// transformers' pattern would find it (at the start only when `at_start`;
/// not followed by a word character when `after` ends in one), and its
/// digits.
fn find_numbered<'t>(
    before: &str,
    after: &str,
    at_start: bool,
    text: &'t str,
) -> Option<(&'t str, &'t str)> {
    let word_end = after
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    text.match_indices(before)
        .map(|(start, _)| start)
        .filter(|start| !at_start || *start == 0)
        .find_map(|start| {
            let digits_start = start + before.len();
            let digits_len = text[digits_start..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let digits_end = digits_start + digits_len;
            let end = digits_end + after.len();
            let clean = digits_len > 0
                && text[digits_end..].starts_with(after)
                && !(word_end
                    && text[end..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_'));
            clean.then(|| (&text[start..end], &text[digits_start..digits_end]))
        })
}

/// Where `find` first matches in `text` as transformers' pattern would: at
/// the start only when `at_start`, and, when `find` ends in a letter or
/// digit, not followed by a word character.
fn find_match(find: &str, at_start: bool, text: &str) -> bool {
    let word_end = find
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ends_cleanly = |end: usize| {
        !word_end
            || !text[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    if at_start {
        return text.starts_with(find) && ends_cleanly(find.len());
    }
    text.match_indices(find)
        .any(|(start, _)| ends_cleanly(start + find.len()))
}

impl KeyRename {
    /// The key after this transform, or `None` when it does not apply
    /// (the `hf` loader, and inference reading a checkpoint's old layout).
    pub fn apply(&self, key: &str) -> Option<String> {
        let (prefix, rest) = scoped_key(key, self.scope)?;
        match self.action {
            RenameAction::Rename {
                find,
                replace,
                at_start,
            } => {
                // Python: key_to_match.replace(match.group(0), target, 1).
                find_match(find, at_start, rest)
                    .then(|| format!("{prefix}{}", rest.replacen(find, replace, 1)))
            }
            RenameAction::RemovePrefix { prefix: removed } => {
                let tail = rest.strip_prefix(removed)?.strip_prefix('.')?;
                (!tail.is_empty()).then(|| format!("{prefix}{tail}"))
            }
            RenameAction::RenameNumbered {
                before,
                after,
                replace_before,
                replace_after,
                at_start,
            } => {
                // Python: the target with `\1` expanded, then
                // key_to_match.replace(match.group(0), target, 1).
                let (matched, digits) = find_numbered(before, after, at_start, rest)?;
                let replacement = format!("{replace_before}{digits}{replace_after}");
                Some(format!(
                    "{prefix}{}",
                    rest.replacen(matched, &replacement, 1)
                ))
            }
        }
    }
}

#[cfg(test)]
mod key_rename_tests {
    use super::*;

    #[test]
    fn numbered_renames_match_like_the_python_patterns() {
        // transformers' WeightRenaming("layers.(\d+).fc1",
        // "layers.\1.mlp.fc1") (DETR), as re.search and str.replace apply it.
        let rename =
            KeyRename::rename_numbered(("layers.", ".fc1"), ("layers.", ".mlp.fc1"), false);
        let cases = [
            (
                "model.encoder.layers.3.fc1.weight",
                Some("model.encoder.layers.3.mlp.fc1.weight"),
            ),
            (
                "model.decoder.layers.12.fc1.bias",
                Some("model.decoder.layers.12.mlp.fc1.bias"),
            ),
            // `(?!\w)` after the pattern's last letter.
            ("model.encoder.layers.3.fc10.weight", None),
            ("model.encoder.layers.x.fc1.weight", None),
            ("model.encoder.layers.3.mlp.fc1.weight", None),
            // The first match that holds, not the first `layers.`.
            ("layers.a.layers.4.fc1", Some("layers.a.layers.4.mlp.fc1")),
        ];
        for (key, renamed) in cases {
            assert_eq!(rename.apply(key).as_deref(), renamed, "{key}");
        }
        let at_start = KeyRename::rename_numbered(("blocks.", ".ff"), ("layers.", ".mlp"), true);
        assert_eq!(
            at_start.apply("blocks.2.ff.w").as_deref(),
            Some("layers.2.mlp.w")
        );
        assert_eq!(at_start.apply("x.blocks.2.ff.w"), None);
    }

    #[test]
    fn renames_match_like_the_python_patterns() {
        let cases = [
            // (find, at_start, text, matches)
            (
                "attention.query",
                false,
                "encoder.layers.0.attention.query.weight",
                true,
            ),
            // `(?!\w)` after a pattern ending in a letter.
            ("attention.query", false, "x.attention.querys.weight", false),
            ("LayerNorm.gamma", false, "a.LayerNorm.gamma", true),
            (
                "model.language_model.model",
                true,
                "model.language_model.model.x",
                true,
            ),
            (
                "model.language_model.model",
                true,
                "x.model.language_model.model.x",
                false,
            ),
            ("encoder.layer.", false, "encoder.layer.3.x", true),
        ];
        for (find, at_start, text, matches) in cases {
            assert_eq!(
                find_match(find, at_start, text),
                matches,
                "{find} in {text}"
            );
        }
    }
}

/// A checkpoint key `from_pretrained` drops instead of reporting it
/// unexpected (`_keys_to_ignore_on_load_unexpected`, stale buffers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreKey {
    /// A buffer of the model (a non-persistent one, from a dump):
    /// from_pretrained does not report model buffers as unexpected.
    Buffer(String),
    /// A non-persistent buffer of a zoo class, `*` standing for a layer
    /// index (`model.layers.*.attn.bias`).
    BufferPattern(&'static str),
    /// One of a zoo class's `_keys_to_ignore_on_load_unexpected`, a Python
    /// regex searched anywhere in the key (`re.search`).
    Regex(&'static str),
}

impl IgnoreKey {
    pub fn matches(&self, key: &str) -> bool {
        match self {
            IgnoreKey::Buffer(buffer) => key == buffer,
            IgnoreKey::BufferPattern(pattern) => zoo::matches_buffer_pattern(pattern, key),
            // A pattern regex-lite cannot read ignores nothing: the key is
            // then reported, as it would be without the rule.
            IgnoreKey::Regex(pattern) => {
                zoo::compiled_regex(pattern).is_some_and(|regex| regex.is_match(key))
            }
        }
    }
}
