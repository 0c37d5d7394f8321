//! BERT and RoBERTa (`BertModel`, `RobertaModel` and their task heads):
//! config fields with the library's defaults, and the tensor list in
//! `state_dict()` order.

use super::*;
use crate::arch::dotted;

// --- BERT and RoBERTa -------------------------------------------------------

pub(super) struct BertConfig {
    vocab: u64,
    hidden: u64,
    layers: u64,
    intermediate: u64,
    positions: u64,
    type_vocab: u64,
    num_labels: u64,
    cross_attention: bool,
    tie: bool,
    roberta: bool,
}

impl BertConfig {
    pub(super) fn defaults(&self) -> Vec<(&'static str, Value)> {
        let vocab = if self.roberta { 50265 } else { 30522 };
        vec![
            ("vocab_size", json!(vocab)),
            ("hidden_size", json!(768)),
            ("num_hidden_layers", json!(12)),
            ("num_attention_heads", json!(12)),
            ("intermediate_size", json!(3072)),
            ("max_position_embeddings", json!(512)),
            ("type_vocab_size", json!(2)),
            ("add_cross_attention", json!(false)),
            ("tie_word_embeddings", json!(true)),
        ]
    }
}

pub(super) fn bert_config(c: &Conf, family: Family) -> Result<BertConfig> {
    let roberta = family == Family::Roberta;
    let hidden = c.u64("hidden_size", 768, MAX_DIM)?;
    let heads = c.u64("num_attention_heads", 12, MAX_DIM)?;
    check_heads(c, hidden, heads)?;
    Ok(BertConfig {
        vocab: c.u64("vocab_size", if roberta { 50265 } else { 30522 }, MAX_VOCAB)?,
        hidden,
        layers: c.u64("num_hidden_layers", 12, MAX_LAYERS)?,
        intermediate: c.u64("intermediate_size", 3072, MAX_DIM)?,
        positions: c.u64("max_position_embeddings", 512, MAX_DIM)?,
        type_vocab: c.u64("type_vocab_size", 2, MAX_VOCAB)?,
        num_labels: c.num_labels()?,
        cross_attention: c.bool("add_cross_attention", false)?,
        tie: c.bool("tie_word_embeddings", true)?,
        roberta,
    })
}

pub(super) fn check_heads(c: &Conf, hidden: u64, heads: u64) -> Result<()> {
    if !hidden.is_multiple_of(heads) {
        return Err(err(
            ErrorKind::BadConfig,
            format!(
                "config field {:?} = {hidden} is not a multiple of {:?} = {heads}",
                c.field_name("hidden_size"),
                c.field_name("num_attention_heads")
            ),
        ));
    }
    Ok(())
}

pub(super) const H: &[&str] = &["hidden_size"];
pub(super) const HI: &[&str] = &["hidden_size", "intermediate_size"];
pub(super) const HL: &[&str] = &["hidden_size", "num_labels"];
pub(super) const HV: &[&str] = &["hidden_size", "vocab_size"];

/// BertAttention / RobertaAttention under `p`.
pub(super) fn bert_attention(b: &mut TensorListBuilder, p: &str, h: u64) {
    for projection in ["query", "key", "value"] {
        b.linear(&format!("{p}.self.{projection}"), h, h, true, H);
    }
    b.linear(&format!("{p}.output.dense"), h, h, true, H);
    b.norm(&format!("{p}.output.LayerNorm"), h, true, H);
}

pub(super) fn build_bert(
    b: &mut TensorListBuilder,
    c: &BertConfig,
    head: Head,
) -> Result<Vec<(String, String)>> {
    let base = if c.roberta { "roberta" } else { "bert" };
    let p = if head == Head::Base {
        String::new()
    } else {
        format!("{base}.")
    };
    let h = c.hidden;
    let pooler = match head {
        Head::Base | Head::PreTraining | Head::NextSentence | Head::MultipleChoice => true,
        Head::SequenceClassification => !c.roberta,
        _ => false,
    };
    b.embedding(&format!("{p}embeddings.word_embeddings"), c.vocab, h, HV);
    let positions = |b: &mut TensorListBuilder| {
        b.embedding(
            &format!("{p}embeddings.position_embeddings"),
            c.positions,
            h,
            &["max_position_embeddings", "hidden_size"],
        )
    };
    if !c.roberta {
        positions(b);
    }
    b.embedding(
        &format!("{p}embeddings.token_type_embeddings"),
        c.type_vocab,
        h,
        &["type_vocab_size", "hidden_size"],
    );
    b.norm(&format!("{p}embeddings.LayerNorm"), h, true, H);
    if c.roberta {
        // RobertaEmbeddings registers position_embeddings last.
        positions(b);
    }
    for i in 0..c.layers {
        layer(b, "num_hidden_layers", i, |b| {
            let l = format!("{p}encoder.layer.{i}");
            bert_attention(b, &dotted(&l, "attention"), h);
            b.optional("add_cross_attention", c.cross_attention, |b| {
                bert_attention(b, &dotted(&l, "crossattention"), h)
            });
            b.linear(
                &format!("{l}.intermediate.dense"),
                c.intermediate,
                h,
                true,
                HI,
            );
            b.linear(&format!("{l}.output.dense"), h, c.intermediate, true, HI);
            b.norm(&format!("{l}.output.LayerNorm"), h, true, H);
        });
    }
    if pooler {
        b.linear(&format!("{p}pooler.dense"), h, h, true, H);
    }
    let mut tied = Vec::new();
    match (head, c.roberta) {
        (Head::MaskedLm | Head::PreTraining, false) => {
            b.tensor("cls.predictions.bias", &[c.vocab], &["vocab_size"]);
            b.linear("cls.predictions.transform.dense", h, h, true, H);
            b.norm("cls.predictions.transform.LayerNorm", h, true, H);
            b.linear("cls.predictions.decoder", c.vocab, h, true, HV);
            if head == Head::PreTraining {
                b.linear("cls.seq_relationship", 2, h, true, H);
            }
            if c.tie {
                tied.push((
                    "cls.predictions.decoder.weight".to_string(),
                    "bert.embeddings.word_embeddings.weight".to_string(),
                ));
                tied.push((
                    "cls.predictions.decoder.bias".to_string(),
                    "cls.predictions.bias".to_string(),
                ));
            }
        }
        (Head::MaskedLm, true) => {
            b.tensor("lm_head.bias", &[c.vocab], &["vocab_size"]);
            b.linear("lm_head.dense", h, h, true, H);
            b.norm("lm_head.layer_norm", h, true, H);
            b.linear("lm_head.decoder", c.vocab, h, true, HV);
            if c.tie {
                tied.push((
                    "lm_head.decoder.weight".to_string(),
                    "roberta.embeddings.word_embeddings.weight".to_string(),
                ));
                tied.push((
                    "lm_head.decoder.bias".to_string(),
                    "lm_head.bias".to_string(),
                ));
            }
        }
        (Head::NextSentence, _) => b.linear("cls.seq_relationship", 2, h, true, H),
        (Head::SequenceClassification, false) | (Head::TokenClassification, _) => {
            b.linear("classifier", c.num_labels, h, true, HL)
        }
        (Head::SequenceClassification, true) => {
            b.linear("classifier.dense", h, h, true, H);
            b.linear("classifier.out_proj", c.num_labels, h, true, HL);
        }
        (Head::QuestionAnswering, _) => b.linear("qa_outputs", 2, h, true, H),
        (Head::MultipleChoice, _) => b.linear("classifier", 1, h, true, H),
        _ => {}
    }
    Ok(tied)
}
