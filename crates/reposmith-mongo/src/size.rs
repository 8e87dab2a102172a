//! The document size limit, checked before a write is sent.
//!
//! MongoDB refuses documents over `maxBsonObjectSize` (16 MiB on every
//! current server; read from `hello` at connect, see
//! [`MongoCapabilities`](crate::MongoCapabilities)). Checking first turns a
//! server error after a 16 MiB upload into [`Error::TooLarge`] naming the
//! entity and its largest field, and nothing is sent.
//!
//! The size is computed from the BSON specification rather than by encoding
//! the document, so the check costs a walk over the values, not a copy.

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Bson, Document, RawDocument};
use reposmith_core::{EntitySchema, Error, Result};

/// Refuses `doc`, a whole document of `schema`'s entity, when its BSON
/// encoding exceeds `limit` bytes.
pub(crate) fn check(schema: &EntitySchema, doc: &Document, limit: i64) -> Result<()> {
    let size = document_size(doc);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if size <= limit {
        return Ok(());
    }
    Err(too_large(schema, doc, size, limit))
}

/// The refusal of `doc`, `size` bytes encoded, naming its largest field.
fn too_large(schema: &EntitySchema, doc: &Document, size: usize, limit: usize) -> Error {
    let (field, bytes) = largest_field(doc);
    let field = schema
        .columns
        .iter()
        .find(|c| c.name == field || (field == "_id" && c.name == schema.id_column().name))
        .map_or(field, |c| c.field);
    Error::TooLarge {
        what: format!(
            "a {} document (its largest field, `{field}`, takes {bytes} bytes)",
            schema.entity
        ),
        size,
        limit,
    }
}

/// Refuses `update`, an update document (`{$set: {..}, $inc: {..}, ..}`)
/// of `schema`'s entity, when its BSON encoding exceeds `limit` bytes: the
/// server refuses such an update as it refuses such a document. The error
/// names the largest assigned field (a JSON path's column for a dotted
/// key), not the operator holding it.
pub(crate) fn check_update(schema: &EntitySchema, update: &Document, limit: i64) -> Result<()> {
    let size = document_size(update);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if size <= limit {
        return Ok(());
    }
    let largest = update
        .values()
        .filter_map(|operand| operand.as_document())
        .map(largest_field)
        .max_by_key(|&(_, bytes)| bytes)
        .unwrap_or(("", 0));
    let (key, bytes) = largest;
    let column = key.split('.').next().unwrap_or(key);
    let field = schema
        .columns
        .iter()
        .find(|c| c.name == column)
        .map_or(column, |c| c.field);
    Err(Error::TooLarge {
        what: format!(
            "an update of a {} document (its largest value, `{field}`, takes {bytes} bytes)",
            schema.entity
        ),
        size,
        limit,
    })
}

/// [`check`] of an encoded document, whose size is its length.
pub(crate) fn check_raw(schema: &EntitySchema, doc: &RawDocument, limit: i64) -> Result<()> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if doc.as_bytes().len() <= limit {
        return Ok(());
    }
    // Over the limit: decoding it to name its largest field costs nothing
    // that matters next to the refusal.
    // The encoded length is the size: refused whatever a recount would say.
    let decoded = Document::try_from(doc)
        .map_err(|e| Error::invalid(schema.entity, "document", format!("unreadable BSON: {e}")))?;
    Err(too_large(schema, &decoded, doc.as_bytes().len(), limit))
}

/// The key of `doc`'s largest element and that element's encoded size.
fn largest_field(doc: &Document) -> (&str, usize) {
    doc.iter()
        .map(|(key, value)| (key.as_str(), element_size(key, value)))
        .max_by_key(|&(_, size)| size)
        .unwrap_or(("", 0))
}

/// Bytes of `doc` encoded: length prefix, elements, terminating NUL.
pub(crate) fn document_size(doc: &Document) -> usize {
    4 + doc
        .iter()
        .map(|(key, value)| element_size(key, value))
        .sum::<usize>()
        + 1
}

/// Type byte, key as a C string, value.
fn element_size(key: &str, value: &Bson) -> usize {
    1 + key.len() + 1 + value_size(value)
}

/// Bytes of a string value: length prefix, UTF-8, NUL.
fn string_size(s: &str) -> usize {
    4 + s.len() + 1
}

fn value_size(value: &Bson) -> usize {
    match value {
        Bson::Double(_) | Bson::DateTime(_) | Bson::Int64(_) | Bson::Timestamp(_) => 8,
        Bson::Int32(_) => 4,
        Bson::Boolean(_) => 1,
        Bson::Null | Bson::Undefined | Bson::MinKey | Bson::MaxKey => 0,
        Bson::ObjectId(_) => 12,
        Bson::Decimal128(_) => 16,
        Bson::String(s) | Bson::JavaScriptCode(s) | Bson::Symbol(s) => string_size(s),
        Bson::Document(doc) => document_size(doc),
        Bson::Array(items) => {
            let elements: usize = items
                .iter()
                .enumerate()
                .map(|(i, item)| 1 + decimal_digits(i) + 1 + value_size(item))
                .sum();
            4 + elements + 1
        }
        Bson::Binary(binary) => {
            // The deprecated subtype 2 repeats the length inside the payload.
            let old = usize::from(binary.subtype == BinarySubtype::BinaryOld) * 4;
            4 + 1 + old + binary.bytes.len()
        }
        Bson::RegularExpression(regex) => {
            regex.pattern.as_str().len() + 1 + regex.options.as_str().len() + 1
        }
        Bson::JavaScriptCodeWithScope(code) => {
            4 + string_size(&code.code) + document_size(&code.scope)
        }
        Bson::DbPointer(_) => dbpointer_size(value),
    }
}

/// A DbPointer's namespace is private in the driver: measure its encoding.
fn dbpointer_size(value: &Bson) -> usize {
    let mut doc = Document::new();
    doc.insert("", value.clone());
    doc.to_vec().map_or(0, |bytes| bytes.len() - 4 - 1 - 1 - 1)
}

/// Digits of `n` in decimal: array keys are "0", "1", ...
fn decimal_digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{Binary, Regex, doc, oid::ObjectId};

    use super::*;

    #[test]
    fn computed_size_equals_the_encoding() {
        let binary = Binary {
            subtype: BinarySubtype::Uuid,
            bytes: vec![7; 16],
        };
        let regex = Regex {
            pattern: "a.*b".try_into().unwrap(),
            options: "i".try_into().unwrap(),
        };
        let items: Vec<Bson> = (0..120).map(Bson::Int32).collect();
        let doc = doc! {
            "_id": ObjectId::new(), "s": "héllo", "n": 1_i32, "l": 2_i64, "f": 1.5,
            "b": true, "z": Bson::Null, "bin": binary, "re": regex,
            "nested": { "a": [1, "two", { "three": 3 }], "items": items },
            "at": mongodb::bson::DateTime::now(),
        };
        assert_eq!(document_size(&doc), doc.to_vec().unwrap().len());
        assert_eq!(document_size(&doc! {}), 5);
    }

    #[test]
    fn raw_check_refuses_what_the_document_check_refuses() {
        use reposmith_core::{ColumnDef, ColumnType, IdStrategy};
        static COLUMNS: [ColumnDef; 2] = [
            ColumnDef::new("id", "id", ColumnType::BigInt, false),
            ColumnDef::new("body", "body", ColumnType::Text, false),
        ];
        static SCHEMA: EntitySchema =
            EntitySchema::new("Note", "notes", &COLUMNS, 0, IdStrategy::Assigned, &[]);
        let schema = &SCHEMA;
        let doc = doc! { "_id": 1_i64, "body": "x".repeat(100) };
        let raw = mongodb::bson::RawDocumentBuf::try_from(&doc).unwrap();
        let size = raw.as_bytes().len() as i64;
        assert!(check_raw(schema, &raw, size).is_ok());
        let err = check_raw(schema, &raw, size - 1).unwrap_err();
        assert!(
            matches!(&err, Error::TooLarge { size: s, .. } if *s as i64 == size),
            "{err}"
        );
        assert!(err.to_string().contains("`body`"), "{err}");
    }
}
