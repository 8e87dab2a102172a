//! Stage 2, continued: the rules of `vector(..)`, `full_text` and `embed(..)`.
//! Each error points at the offending tokens and says how to fix them.

use darling::Error;
use darling::error::Accumulator;
use darling::util::{Override, SpannedValue};
use proc_macro2::Span;
use syn::Type;

use super::attr::{RepoField, VectorAttr};
use super::kinds::{Distance, IndexKind, VectorKind};
use super::model::{Field, Role, Storage, VectorIndexModel, VectorModel};
use super::types::{last_segment, option_inner};

/// The generated tsvector column; mirrors `reposmith_core::FULL_TEXT_COLUMN`.
pub(crate) const FULL_TEXT_COLUMN: &str = "search_tsv";

/// The pgvector kind a field is spelled as, by its last path segment.
fn vector_kind(ty: &Type) -> Option<VectorKind> {
    let inner = option_inner(ty).unwrap_or(ty);
    VectorKind::from_type_name(&last_segment(inner)?)
}

/// Rule: pgvector fields carry `vector(dims = N)`, and `vector(..)` is only
/// on pgvector fields with a valid dimension, distance and index.
pub(crate) fn vector(f: &RepoField, role: Role, errors: &mut Accumulator) -> Option<VectorModel> {
    let kind = vector_kind(&f.ty);
    let Some(attr) = &f.vector else {
        if let (Some(kind), false) = (kind, f.skip.is_present() || f.json.is_present()) {
            let message = format!(
                "a {} field needs its dimension: add #[repo(vector(dims = 384))] \
                 (and optionally distance = \"cosine\", index = \"hnsw\")",
                kind.rust_type()
            );
            errors.push(Error::custom(message).with_span(&f.ty));
        }
        return None;
    };
    let Some(kind) = kind else {
        let message = "`vector` applies to pgvector `Vector`, `HalfVector`, `SparseVector` \
                       or `Bit` fields (optionally in an `Option`)";
        errors.push(Error::custom(message).with_span(&attr.span()));
        return None;
    };
    conflicting_options(f, role, attr, errors);
    let dims = dims(kind, attr, errors)?;
    let distance = distance(kind, attr, errors)?;
    let index = index(kind, dims, distance, attr, errors)?;
    Some(VectorModel {
        kind,
        dims,
        distance,
        index,
    })
}

/// Rule: a vector is plain data: no id/version/timestamp role, no json, unique, index or default.
fn conflicting_options(
    f: &RepoField,
    role: Role,
    attr: &SpannedValue<VectorAttr>,
    errors: &mut Accumulator,
) {
    let others = [
        (role != Role::Data, "an id, version or timestamp role"),
        (f.json.is_present(), "`json`"),
        (f.unique.is_present(), "`unique`"),
        (
            f.index.is_present(),
            "`index` (the vector index is chosen with index = \"..\")",
        ),
        (f.default.is_some(), "`default`"),
        (f.skip.is_present(), "`skip`"),
    ];
    for (_, what) in others.iter().filter(|(present, _)| *present) {
        let message = format!("a `vector` field cannot also have {what}: remove it");
        errors.push(Error::custom(message).with_span(&attr.span()));
    }
}

fn dims(kind: VectorKind, attr: &VectorAttr, errors: &mut Accumulator) -> Option<u32> {
    let dims = *attr.dims;
    let max = kind.max_stored_dims();
    if dims == 0 || dims > max {
        let message = format!(
            "dims must be between 1 and {max} for {}, found {dims}",
            kind.rust_type()
        );
        errors.push(Error::custom(message).with_span(&attr.dims.span()));
        return None;
    }
    Some(dims)
}

/// Rule: the distance is defined on the field's kind (darling has already
/// refused names outside the vocabulary).
fn distance(kind: VectorKind, attr: &VectorAttr, errors: &mut Accumulator) -> Option<Distance> {
    let distance = attr
        .distance
        .as_ref()
        .map_or(kind.default_distance(), |d| **d);
    if kind.supports(distance) {
        return Some(distance);
    }
    let name = distance.name();
    let message = if kind == VectorKind::Bit {
        format!("`Bit` vectors are compared by \"hamming\" or \"jaccard\", not \"{name}\"")
    } else {
        format!(
            "\"{name}\" applies to `Bit` vectors only: use \"cosine\", \"l2\", \"inner_product\" or \"l1\""
        )
    };
    push_at(
        errors,
        message,
        attr.distance.as_ref().map(SpannedValue::span),
    );
    None
}

fn push_at(errors: &mut Accumulator, message: String, at: Option<Span>) {
    let error = Error::custom(message);
    errors.push(match at {
        Some(at) => error.with_span(&at),
        None => error,
    });
}

fn index(
    kind: VectorKind,
    dims: u32,
    distance: Distance,
    attr: &VectorAttr,
    errors: &mut Accumulator,
) -> Option<VectorIndexModel> {
    let chosen = attr.index.as_ref().map_or(IndexKind::Hnsw, |i| **i);
    let misplaced = [
        (attr.m.as_ref(), "m", IndexKind::Hnsw),
        (
            attr.ef_construction.as_ref(),
            "ef_construction",
            IndexKind::Hnsw,
        ),
        (attr.lists.as_ref(), "lists", IndexKind::IvfFlat),
    ];
    for (at, key, wanted) in misplaced {
        if let Some(at) = at.filter(|_| chosen != wanted) {
            let message = format!(
                "`{key}` applies to index = \"{}\" only: remove it",
                wanted.name()
            );
            errors.push(Error::custom(message).with_span(&at.span()));
        }
    }
    let model = match chosen {
        IndexKind::None => VectorIndexModel::None,
        IndexKind::Hnsw => hnsw(attr, errors)?,
        IndexKind::IvfFlat => ivfflat(kind, distance, attr, errors)?,
    };
    if model != VectorIndexModel::None {
        index_fits(kind, dims, chosen, attr, errors);
    }
    Some(model)
}

/// Rule: pgvector refuses to build an index over more dimensions than it can
/// hold in a page: vector 2,000, halfvec 4,000, bit 64,000.
fn index_fits(
    kind: VectorKind,
    dims: u32,
    index: IndexKind,
    attr: &VectorAttr,
    errors: &mut Accumulator,
) {
    let Some(max) = kind.max_indexed_dims().filter(|max| dims > *max) else {
        return;
    };
    let fix = match kind {
        VectorKind::Dense if dims <= 4_000 => {
            "store it as `HalfVector` (halfvec indexes hold up to 4,000 dimensions, \
             at half the memory and nearly the same recall), or "
        }
        _ => "",
    };
    let message = format!(
        "pgvector cannot build an {} index on {} over {max} dimensions, and this field has {dims}: \
         {fix}reduce the dimensions (many embedding models can return shortened vectors), \
         or set index = \"none\" for exact search",
        index.name(),
        kind.sql_type()
    );
    errors.push(Error::custom(message).with_span(&attr.dims.span()));
}

fn hnsw(attr: &VectorAttr, errors: &mut Accumulator) -> Option<VectorIndexModel> {
    let m = attr.m.as_ref().map_or(16, |m| **m);
    let ef = attr.ef_construction.as_ref().map_or(64, |e| **e);
    let mut ok = true;
    if let Some(at) = attr.m.as_ref().filter(|_| !(2..=100).contains(&m)) {
        let message = format!("m must be between 2 and 100 (pgvector's range), found {m}");
        errors.push(Error::custom(message).with_span(&at.span()));
        ok = false;
    }
    if !(4..=1000).contains(&ef) || ef < 2 * m {
        let message = format!(
            "ef_construction must be between 4 and 1000 and at least 2 * m ({}), found {ef}",
            2 * m
        );
        let error = Error::custom(message);
        errors.push(match attr.ef_construction.as_ref().or(attr.m.as_ref()) {
            Some(at) => error.with_span(&at.span()),
            None => error,
        });
        ok = false;
    }
    ok.then_some(VectorIndexModel::Hnsw {
        m,
        ef_construction: ef,
    })
}

fn ivfflat(
    kind: VectorKind,
    distance: Distance,
    attr: &VectorAttr,
    errors: &mut Accumulator,
) -> Option<VectorIndexModel> {
    let at = attr.index.as_ref().map(SpannedValue::span);
    if kind == VectorKind::Sparse {
        let message = "pgvector has no IVFFlat index for `SparseVector`: use index = \"hnsw\"";
        push_at(errors, message.to_owned(), at);
        return None;
    }
    if !distance.ivfflat() {
        let message = format!(
            "pgvector has no IVFFlat operator class for the {} distance: use index = \"hnsw\"",
            distance.name()
        );
        push_at(errors, message, at);
        return None;
    }
    let lists = attr.lists.as_ref().map_or(100, |l| **l);
    if let Some(at) = attr
        .lists
        .as_ref()
        .filter(|_| !(1..=32_768).contains(&lists))
    {
        let message = format!("lists must be between 1 and 32768, found {lists}");
        errors.push(Error::custom(message).with_span(&at.span()));
        return None;
    }
    Some(VectorIndexModel::IvfFlat { lists })
}

/// Rule: `full_text` is on text fields; the language is a configuration name.
pub(crate) fn full_text(f: &RepoField, errors: &mut Accumulator) -> Option<String> {
    let attr = f.full_text.as_ref()?;
    let language = match &**attr {
        Override::Inherit => None,
        Override::Explicit(explicit) => explicit.language.as_ref(),
    };
    let inner = option_inner(&f.ty).unwrap_or(&f.ty);
    if f.json.is_present()
        || f.skip.is_present()
        || last_segment(inner).as_deref() != Some("String")
    {
        let message = "`full_text` applies to stored `String` (or `Option<String>`) fields";
        errors.push(Error::custom(message).with_span(&attr.span()));
        return None;
    }
    let Some(language) = language else {
        return Some("english".to_owned());
    };
    let valid = !language.is_empty()
        && language.len() <= 63
        && language
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        let message = format!(
            "\"{}\" is not a text search configuration name: use one such as \"english\", \
             \"simple\" or \"german\" (lowercase letters, digits and `_`)",
            language.as_str()
        );
        errors.push(Error::custom(message).with_span(&language.span()));
        return None;
    }
    Some(language.as_str().to_owned())
}

/// Rule (entity level): `embed(from = "..")` is on a vector field and names
/// a stored `String` field; returns nothing, but rewrites `embed_from` from
/// the field name to its column name.
pub(crate) fn embed_sources(input: &[RepoField], fields: &mut [Field], errors: &mut Accumulator) {
    for (i, raw) in input.iter().enumerate() {
        let Some(embed) = &raw.embed else { continue };
        if fields[i].vector.is_none() {
            let message = "`embed` fills a vector: put it on a #[repo(vector(..))] field";
            errors.push(Error::custom(message).with_span(&embed.span()));
            continue;
        }
        if !fields[i]
            .vector
            .as_ref()
            .is_some_and(|v| v.kind.embeddable())
        {
            let message = "`embed` fills `Vector` or `HalfVector` fields: embedders return floats";
            errors.push(Error::custom(message).with_span(&embed.span()));
            continue;
        }
        let source = fields
            .iter()
            .zip(input)
            .find(|(f, _)| f.ident == *embed.from);
        match source {
            Some((f, raw_source))
                if f.storage == Storage::Typed
                    && last_segment(option_inner(&raw_source.ty).unwrap_or(&raw_source.ty))
                        .as_deref()
                        == Some("String") =>
            {
                fields[i].embed_from = Some(f.column.clone());
            }
            _ => {
                let message = format!(
                    "`from` must name a stored `String` field of this struct; \"{}\" is not one",
                    embed.from.as_str()
                );
                errors.push(Error::custom(message).with_span(&embed.from.span()));
            }
        }
    }
}

/// Rule: the generated full-text column's name is not taken by a field.
pub(crate) fn full_text_column_free(fields: &[Field], errors: &mut Accumulator) {
    if fields.iter().all(|f| f.full_text.is_none()) {
        return;
    }
    for field in fields.iter().filter(|f| f.column == FULL_TEXT_COLUMN) {
        let message = format!(
            "column `{FULL_TEXT_COLUMN}` is generated for the full-text fields: \
             give this field another #[repo(column = \"...\")]"
        );
        errors.push(Error::custom(message).with_span(&field.ident));
    }
}
