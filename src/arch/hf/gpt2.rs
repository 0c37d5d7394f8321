//! GPT-2: config with defaults and the tensor list in `state_dict()` order
//! (Conv1D weights stored transposed; the tied LM head).

use super::*;
use crate::arch::dotted;

// --- GPT-2 ------------------------------------------------------------------

pub(super) struct Gpt2Config {
    vocab: u64,
    positions: u64,
    embed: u64,
    layers: u64,
    inner: u64,
    cross_attention: bool,
    tie: bool,
    num_labels: u64,
    summary_use_proj: bool,
    summary_proj_to_labels: bool,
}

impl Gpt2Config {
    pub(super) fn defaults(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("vocab_size", json!(50257)),
            ("n_positions", json!(1024)),
            ("n_embd", json!(768)),
            ("n_layer", json!(12)),
            ("n_head", json!(12)),
            ("n_inner", Value::Null),
            ("add_cross_attention", json!(false)),
            ("tie_word_embeddings", json!(true)),
        ]
    }
}

pub(super) fn gpt2_config(c: &Conf) -> Result<Gpt2Config> {
    let embed = c.u64("n_embd", 768, MAX_DIM)?;
    let heads = c.u64("n_head", 12, MAX_DIM)?;
    if !embed.is_multiple_of(heads) {
        return Err(err(
            ErrorKind::BadConfig,
            format!("config field \"n_embd\" = {embed} is not a multiple of \"n_head\" = {heads}"),
        ));
    }
    Ok(Gpt2Config {
        vocab: c.u64("vocab_size", 50257, MAX_VOCAB)?,
        positions: c.u64("n_positions", 1024, MAX_DIM)?,
        embed,
        layers: c.u64("n_layer", 12, MAX_LAYERS)?,
        inner: c.u64("n_inner", 4 * embed, MAX_DIM)?,
        cross_attention: c.bool("add_cross_attention", false)?,
        tie: c.bool("tie_word_embeddings", true)?,
        num_labels: c.num_labels()?,
        summary_use_proj: c.bool("summary_use_proj", true)?,
        summary_proj_to_labels: c.bool("summary_proj_to_labels", true)?,
    })
}

pub(super) const E: &[&str] = &["n_embd"];
pub(super) const EI: &[&str] = &["n_embd", "n_inner"];

pub(super) fn build_gpt2(
    b: &mut TensorListBuilder,
    c: &Gpt2Config,
    head: Head,
) -> Vec<(String, String)> {
    let p = if head == Head::Base {
        ""
    } else {
        "transformer."
    };
    let e = c.embed;
    b.embedding(&format!("{p}wte"), c.vocab, e, &["vocab_size", "n_embd"]);
    b.embedding(
        &format!("{p}wpe"),
        c.positions,
        e,
        &["n_positions", "n_embd"],
    );
    for i in 0..c.layers {
        layer(b, "n_layer", i, |b| {
            let l = format!("{p}h.{i}");
            // Conv1D stores its weight as [in, out].
            b.norm(&dotted(&l, "ln_1"), e, true, E);
            b.conv1d(&format!("{l}.attn.c_attn"), e, 3 * e, E);
            b.conv1d(&format!("{l}.attn.c_proj"), e, e, E);
            b.norm(&dotted(&l, "ln_2"), e, true, E);
            b.optional("add_cross_attention", c.cross_attention, |b| {
                b.conv1d(&format!("{l}.crossattention.c_attn"), e, 2 * e, E);
                b.conv1d(&format!("{l}.crossattention.q_attn"), e, e, E);
                b.conv1d(&format!("{l}.crossattention.c_proj"), e, e, E);
                b.norm(&dotted(&l, "ln_cross_attn"), e, true, E);
            });
            b.conv1d(&format!("{l}.mlp.c_fc"), e, c.inner, EI);
            // c_proj's bias is n_embd wide whatever n_inner is.
            b.conv1d(&format!("{l}.mlp.c_proj"), c.inner, e, EI);
        });
    }
    b.norm(&format!("{p}ln_f"), e, true, E);
    let mut tied = Vec::new();
    let labels: &[&'static str] = &["n_embd", "num_labels"];
    match head {
        Head::CausalLm | Head::DoubleHeads => {
            b.linear("lm_head", c.vocab, e, false, &["vocab_size", "n_embd"]);
            if head == Head::DoubleHeads && c.summary_use_proj {
                // GPT2DoubleHeadsModel sets num_labels = 1 before building
                // its SequenceSummary.
                let classes = if c.summary_proj_to_labels { 1 } else { e };
                b.linear("multiple_choice_head.summary", classes, e, true, E);
            }
            if c.tie {
                tied.push((
                    "lm_head.weight".to_string(),
                    "transformer.wte.weight".to_string(),
                ));
            }
        }
        Head::SequenceClassification => b.linear("score", c.num_labels, e, false, labels),
        Head::TokenClassification => b.linear("classifier", c.num_labels, e, true, labels),
        Head::QuestionAnswering => b.linear("qa_outputs", 2, e, true, E),
        _ => {}
    }
    tied
}
