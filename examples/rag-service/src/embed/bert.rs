//! all-MiniLM-L6-v2's encoder: a BERT of 6 layers, on candle-nn's layers.
//!
//! Only what this model is: absolute position embeddings, one token type
//! (every token is type 0, as in `SentenceTransformer.encode`), post-norm
//! layers with the exact (erf) GELU, no pooler and no heads. The weights
//! keep the names `transformers` saves (`embeddings.word_embeddings.weight`,
//! `encoder.layer.N.attention.self.query.weight`, ...).
//!
//! Two rewrites of the textbook computation save whole passes over the
//! activations without changing the result beyond float rounding: the
//! query, key and value projections are one matrix (one matmul instead of
//! three), and the query rows are pre-scaled by 1/√(head size) (so the
//! attention scores, the largest tensor of the pass, are not scaled again).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::{DIMS, MAX_TOKENS};

/// The fields of the model's `config.json` that the encoder is built from.
/// Other fields (dropout rates, initialiser range, ...) only matter for
/// training and are ignored.
#[derive(Debug, Deserialize)]
pub(super) struct Config {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: String,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f64,
    /// Absent in older configs, which means "absolute".
    #[serde(default)]
    position_embedding_type: Option<String>,
}

impl Config {
    /// Why this encoder cannot run the model the config describes, if it
    /// cannot: it implements one architecture, not BERT's every variant.
    pub(super) fn check(&self) -> std::result::Result<(), String> {
        let heads = self.num_attention_heads;
        let problem = if self.hidden_size != DIMS {
            format!("hidden_size is {}, expected {DIMS}", self.hidden_size)
        } else if heads == 0 || !self.hidden_size.is_multiple_of(heads) {
            format!("num_attention_heads {heads} does not divide hidden_size")
        } else if self.hidden_act != "gelu" {
            format!(
                "hidden_act is {:?}, only \"gelu\" is implemented",
                self.hidden_act
            )
        } else if self
            .position_embedding_type
            .as_deref()
            .is_some_and(|t| t != "absolute")
        {
            "only absolute position embeddings are implemented".to_owned()
        } else if self.max_position_embeddings < MAX_TOKENS {
            format!(
                "max_position_embeddings {} is below the {MAX_TOKENS} tokens a text may have",
                self.max_position_embeddings
            )
        } else if self.type_vocab_size == 0 {
            "type_vocab_size is 0: there is no token type 0".to_owned()
        } else {
            return Ok(());
        };
        Err(problem)
    }
}

/// The encoder, loaded: token ids in, one hidden vector per token out.
pub(super) struct Bert {
    words: Embedding,
    /// Position rows with token type 0's row already added: every token is
    /// of type 0, so the sum is the same for every text and is done once.
    positions: Tensor,
    norm: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    /// The encoder from the safetensors weights in `vb`, shaped by `config`
    /// (which [`Config::check`] accepted).
    pub(super) fn load(vb: &VarBuilder, config: &Config) -> Result<Bert> {
        let hidden = config.hidden_size;
        let emb = vb.pp("embeddings");
        let words = emb.get((config.vocab_size, hidden), "word_embeddings.weight")?;
        let positions = emb.get(
            (config.max_position_embeddings, hidden),
            "position_embeddings.weight",
        )?;
        let types = emb.get(
            (config.type_vocab_size, hidden),
            "token_type_embeddings.weight",
        )?;
        let positions = positions.broadcast_add(&types.get(0)?)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(&vb.pp(format!("encoder.layer.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            words: Embedding::new(words, hidden),
            positions,
            norm: layer_norm(&emb.pp("LayerNorm"), config)?,
            layers,
        })
    }

    /// Hidden states `(batch, tokens, DIMS)` for `ids` `(batch, tokens)`;
    /// `mask` (same shape, 1 for a real token and 0 for padding) keeps
    /// every token from attending to padding.
    pub(super) fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (_, tokens) = ids.dims2()?;
        let embedded = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.narrow(0, 0, tokens)?)?;
        let mut hidden = self.norm.forward(&embedded)?;
        let bias = attention_bias(mask)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &bias)?;
        }
        Ok(hidden)
    }
}

/// What is added to the attention scores: 0 for real tokens, the lowest
/// f32 for padding (its softmax weight is then exactly 0), shaped
/// `(batch, 1, 1, tokens)` to broadcast over heads and query positions.
fn attention_bias(mask: &Tensor) -> Result<Tensor> {
    let padding = mask.to_dtype(DType::F32)?.affine(-1.0, 1.0)?;
    let bias = padding.affine(f64::from(f32::MIN), 0.0)?;
    bias.unsqueeze(1)?.unsqueeze(1)
}

/// One encoder layer: self-attention, then the feed-forward block, each
/// added to its input and layer-normalised (BERT's post-norm order).
struct Layer {
    /// Query (pre-scaled), key and value projections as one.
    qkv: Linear,
    heads: usize,
    attention_out: Linear,
    attention_norm: LayerNorm,
    expand: Linear,
    contract: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(vb: &VarBuilder, config: &Config) -> Result<Layer> {
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        let attention = vb.pp("attention");
        Ok(Layer {
            qkv: fused_qkv(&attention.pp("self"), hidden, hidden / heads)?,
            heads,
            attention_out: linear(&attention.pp("output.dense"), hidden, hidden)?,
            attention_norm: layer_norm(&attention.pp("output.LayerNorm"), config)?,
            expand: linear(
                &vb.pp("intermediate.dense"),
                hidden,
                config.intermediate_size,
            )?,
            contract: linear(&vb.pp("output.dense"), config.intermediate_size, hidden)?,
            output_norm: layer_norm(&vb.pp("output.LayerNorm"), config)?,
        })
    }

    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let attended = self.attention(x, bias)?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&attended)? + x)?)?;
        let expanded = self.expand.forward(&attended)?.gelu_erf()?;
        let out = (self.contract.forward(&expanded)? + &attended)?;
        self.output_norm.forward(&out)
    }

    /// Multi-head self-attention: `(batch, tokens, hidden)` in and out,
    /// before the output projection.
    fn attention(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (batch, tokens, hidden) = x.dims3()?;
        let head_size = hidden / self.heads;
        // (batch, tokens, 3 × hidden) → (3, batch, heads, tokens, head_size).
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((batch, tokens, 3, self.heads, head_size))?
            .permute((2, 0, 3, 1, 4))?;
        let [q, k, v] = [0, 1, 2].map(|i| qkv.get(i).and_then(|t| t.contiguous()));
        let scores = q?.matmul(&k?.t()?)?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        weights
            .matmul(&v?)?
            .transpose(1, 2)?
            .reshape((batch, tokens, hidden))
    }
}

/// The query, key and value projections of `vb` (`query`, `key`, `value`)
/// stacked into one `(3 × hidden, hidden)` projection, the query's weights
/// and bias scaled by 1/√`head_size` (the scaling of the attention scores).
fn fused_qkv(vb: &VarBuilder, hidden: usize, head_size: usize) -> Result<Linear> {
    let scale = 1.0 / (head_size as f64).sqrt();
    let part = |name: &str, factor: f64| -> Result<(Tensor, Tensor)> {
        let weight = vb.get((hidden, hidden), &format!("{name}.weight"))?;
        let bias = vb.get(hidden, &format!("{name}.bias"))?;
        Ok((weight.affine(factor, 0.0)?, bias.affine(factor, 0.0)?))
    };
    let (wq, bq) = part("query", scale)?;
    let (wk, bk) = part("key", 1.0)?;
    let (wv, bv) = part("value", 1.0)?;
    Ok(Linear::new(
        Tensor::cat(&[wq, wk, wv], 0)?,
        Some(Tensor::cat(&[bq, bk, bv], 0)?),
    ))
}

/// A dense layer of `vb` (`weight` `(out, in)` and `bias`).
fn linear(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Linear> {
    let weight = vb.get((outputs, inputs), "weight")?;
    let bias = vb.get(outputs, "bias")?;
    Ok(Linear::new(weight, Some(bias)))
}

/// A LayerNorm of `vb` over the hidden size (scale `weight`, shift `bias`).
fn layer_norm(vb: &VarBuilder, config: &Config) -> Result<LayerNorm> {
    let weight = vb.get(config.hidden_size, "weight")?;
    let bias = vb.get(config.hidden_size, "bias")?;
    Ok(LayerNorm::new(weight, bias, config.layer_norm_eps))
}
