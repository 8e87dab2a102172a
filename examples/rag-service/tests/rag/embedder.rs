//! The embedder against sentence-transformers: the model must be the real
//! all-MiniLM-L6-v2 run the way `SentenceTransformer.encode` runs it.
//!
//! The model comes from `$RAG_MODEL_DIR` or `<workspace>/target/rag/model`
//! (`cargo xtask rag fetch` puts it there; `cargo xtask test` fetches it
//! first). Without it these tests fail, saying so: they never skip.

use std::sync::OnceLock;

use reposmith::Embedder;
use reposmith_example_rag::embed::{self, DIMS, LoadError, MiniLm};

/// The model, loaded once per test process.
fn model() -> &'static MiniLm {
    static MODEL: OnceLock<MiniLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = embed::model_dir();
        MiniLm::load(&dir).unwrap_or_else(|e| {
            panic!(
                "the RAG model is not in {}: {e}\nrun `cargo xtask rag fetch` (or set RAG_MODEL_DIR)",
                dir.display()
            )
        })
    })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|t| (*t).to_owned()).collect()
}

/// The example of sbert.net's quickstart: `model.similarity(embeddings,
/// embeddings)` prints 0.6660 (weather/sunny), 0.1046 (weather/stadium)
/// and 0.1411 (sunny/stadium).
#[test]
fn similarities_match_sentence_transformers() {
    let v = model()
        .embed_blocking(&texts(&[
            "The weather is lovely today.",
            "It's so sunny outside!",
            "He drove to the stadium.",
        ]))
        .unwrap();
    let rounded = |x: f32| (x * 10_000.0).round() / 10_000.0;
    assert_eq!(rounded(dot(&v[0], &v[1])), 0.6660, "weather/sunny");
    assert_eq!(rounded(dot(&v[0], &v[2])), 0.1046, "weather/stadium");
    assert_eq!(rounded(dot(&v[1], &v[2])), 0.1411, "sunny/stadium");
}

#[test]
fn vectors_have_384_dimensions_and_unit_length() {
    let v = model()
        .embed_blocking(&texts(&[
            "VACUUM reclaims storage occupied by dead tuples.",
            "",
        ]))
        .unwrap();
    for vector in &v {
        assert_eq!(vector.len(), DIMS);
        let norm = dot(vector, vector).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

/// The same text gives the same vector, alone or in a batch of texts of
/// other lengths (batches are sorted by length and padded: the order of the
/// answer and the masking of the padding must both be right).
#[test]
fn a_text_gets_the_same_vector_alone_and_in_any_batch() {
    let short = "Indexes speed up queries.";
    let mut batch = vec![
        "A much longer passage about write-ahead logging, checkpoints and how the server recovers after a crash by replaying the log from the last checkpoint onwards.".to_owned(),
        short.to_owned(),
        "Short.".to_owned(),
    ];
    // More than one forward pass' worth, so sorting and batching both happen.
    batch.extend((0..40).map(|i| format!("Filler sentence number {i} about tables.")));
    let together = model().embed_blocking(&batch).unwrap();
    let alone = model().embed_one(short).unwrap();
    let again = model().embed_one(short).unwrap();
    assert_eq!(alone, again, "the same text twice");
    let distance: f32 = together[1]
        .iter()
        .zip(&alone)
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(distance < 1e-4, "in a batch vs alone: L1 {distance}");
    let first_alone = model().embed_one(&batch[0]).unwrap();
    assert!(dot(&together[0], &first_alone) > 0.9999);
    assert!(
        dot(&together[0], &together[1]) < 0.99,
        "different texts stay apart"
    );
}

/// Texts are cut at 256 word pieces (sentence-transformers' `max_seq_length`,
/// not the 128 of `tokenizer.json`): two texts that agree on their first
/// 300 words embed the same, while two that differ at word 200 do not.
#[test]
fn texts_are_cut_at_256_word_pieces() {
    let words = |n: usize| (0..n).map(|i| format!("w{}", i % 10)).collect::<Vec<_>>();
    let base = words(300).join(" ");
    let longer = format!("{base} and then something else entirely");
    let v = model().embed_blocking(&[base.clone(), longer]).unwrap();
    assert!(
        dot(&v[0], &v[1]) > 0.99999,
        "past 256 pieces nothing counts"
    );
    // "w0".."w9" are two pieces each: word 100 is past piece 128, within 256.
    let mut changed = words(300);
    for w in &mut changed[100..110] {
        *w = "database".into();
    }
    let v2 = model().embed_one(&changed.join(" ")).unwrap();
    assert!(dot(&v[0], &v2) < 0.9999, "words 100-110 must count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedder_trait_gives_the_same_vectors() {
    let model = model().clone();
    let input = texts(&["The weather is lovely today.", "He drove to the stadium."]);
    let via_trait = Embedder::embed(&model, &input).await.unwrap();
    let direct = model.embed_blocking(&input).unwrap();
    assert_eq!(via_trait, direct);
    assert!(model.max_batch() >= embed::BATCH);
}

#[test]
fn a_missing_model_file_is_named() {
    let dir = std::env::temp_dir().join(format!("rag-no-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = MiniLm::load(&dir).unwrap_err();
    match &err {
        LoadError::Missing { path } => assert!(path.ends_with("config.json"), "{path:?}"),
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(err.to_string().contains("cargo xtask rag fetch"), "{err}");
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    std::fs::write(dir.join("model.safetensors"), "").unwrap();
    let err = MiniLm::load(&dir).unwrap_err();
    assert!(
        matches!(&err, LoadError::Bad { path, .. } if path.ends_with("config.json")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A config.json that parses but describes a model the encoder does not
/// implement (here the tanh-approximated GELU) is refused, naming the file
/// and the field, before the weights are read.
#[test]
fn a_config_the_encoder_cannot_run_is_named() {
    let dir = std::env::temp_dir().join(format!("rag-other-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = std::fs::read_to_string(embed::model_dir().join("config.json"))
        .expect("the RAG model's config.json (run `cargo xtask rag fetch`)");
    let mut config: serde_json::Value = serde_json::from_str(&real).unwrap();
    config["hidden_act"] = "gelu_new".into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    std::fs::write(dir.join("model.safetensors"), "").unwrap();
    let err = MiniLm::load(&dir).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    match &err {
        LoadError::Bad { path, reason } => {
            assert!(path.ends_with("config.json"), "{path:?}");
            assert!(reason.contains("hidden_act"), "{reason}");
        }
        other => panic!("expected Bad config.json, got {other:?}"),
    }
}
