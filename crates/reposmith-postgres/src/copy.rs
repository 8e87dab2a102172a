//! `insert_many` through `COPY ... FROM STDIN (FORMAT binary)`: the fastest
//! way into Postgres, streamed so only one chunk of encoded rows is in memory.
//!
//! Each entity is stamped, checked and encoded on its way out, so a bad
//! value in row 60,000 is found before it is sent; the COPY is then aborted,
//! which fails the statement and leaves nothing written. The binary row
//! format is written here by hand because sqlx exposes COPY only as raw
//! bytes; each encoding below is the type's `send` function in Postgres.

use reposmith_core::{Clock, ColumnType, Entity, EntitySchema, Error, Result, Value};
use sqlx::PgConnection;

use crate::ddl::{quote_ident, table_name};
use crate::embed::Fills;
use crate::validate::{check_row, pg_days, pg_micros};
use crate::write::stamp_new;

/// Signature, flags and header-extension length of a binary COPY stream.
pub(crate) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Encoded bytes buffered before a CopyData message goes out.
const CHUNK: usize = 1 << 20;

/// True when every inserted column has a binary encoding here (arrays of
/// arrays do not: they take the `VALUES` path).
pub(crate) fn supports(schema: &EntitySchema, columns: &[usize]) -> bool {
    columns.iter().all(|&i| match schema.columns[i].ty {
        ColumnType::Array(inner) => !matches!(inner, ColumnType::Array(_)),
        _ => true,
    })
}

/// Streams `entities` into `columns` of `E`'s table; returns the rows stored.
/// A row whose fields encode to more than `limit` bytes (each field's
/// length word and binary form, as a Bind message would carry them) is
/// refused by its index and the COPY aborted: the cap a statement's bound
/// values have applies here to each row, as the server reads one at a time.
pub(crate) async fn copy_in<E: Entity>(
    connection: &mut PgConnection,
    columns: &[usize],
    entities: &[E],
    fills: &Fills,
    (limit, clock): (usize, &Clock),
) -> std::result::Result<u64, CopyError> {
    let schema = E::SCHEMA;
    let names: Vec<String> = columns
        .iter()
        .map(|&i| quote_ident(schema.columns[i].name))
        .collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        table_name(schema),
        names.join(", ")
    );
    // Integers go at their column's width, which a hand-made table may not share with the field.
    let widths = crate::bind::stored_integer_widths(connection, schema, columns)
        .await
        .map_err(CopyError::Sql)?;
    let mut copy = connection
        .copy_in_raw(&statement)
        .await
        .map_err(CopyError::Sql)?;
    let mut buffer = Vec::with_capacity(CHUNK + 4096);
    buffer.extend_from_slice(HEADER);
    for (i, entity) in entities.iter().enumerate() {
        let start = buffer.len();
        let encoded = stamped_row(schema, entity, i, fills, clock)
            .and_then(|values| encode_row(schema, columns, &widths, &values, &mut buffer))
            .and_then(|()| row_within(schema, buffer.len() - start, limit));
        if let Err(error) = encoded {
            let error = error.at_row(i, entities.len());
            // Aborting fails the COPY, so none of the rows already sent are kept.
            let aborted = copy.abort(error.to_string()).await.is_ok();
            return Err(CopyError::Input { error, aborted });
        }
        if buffer.len() >= CHUNK {
            copy.send(std::mem::take(&mut buffer))
                .await
                .map_err(CopyError::Sql)?;
            buffer.reserve(CHUNK + 4096);
        }
    }
    buffer.extend_from_slice(&(-1i16).to_be_bytes());
    copy.send(buffer).await.map_err(CopyError::Sql)?;
    copy.finish().await.map_err(CopyError::Sql)
}

/// Refuses a row that encoded to `encoded` bytes (its 2-byte field count
/// included, which a Bind message does not carry) over `limit`.
fn row_within(schema: &EntitySchema, encoded: usize, limit: usize) -> Result<()> {
    let size = encoded.saturating_sub(2);
    if size <= limit {
        return Ok(());
    }
    Err(Error::TooLarge {
        what: format!("a {} row's values in COPY", schema.entity),
        size,
        limit,
    })
}

/// Why a COPY failed: a value rejected before sending, or the server's error.
pub(crate) enum CopyError {
    /// A row failed its checks; `aborted` when the server confirmed the
    /// abort, so the session is ready again (outside a transaction, idle).
    Input {
        error: Error,
        aborted: bool,
    },
    Sql(sqlx::Error),
}

/// The values of the entity at `position`, stamped at `clock`'s time and
/// with its embedded vectors filled.
fn stamped_row<E: Entity>(
    schema: &EntitySchema,
    entity: &E,
    position: usize,
    fills: &Fills,
    clock: &Clock,
) -> Result<Vec<Value>> {
    let mut values = entity.to_values()?;
    stamp_new(schema, &mut values, clock);
    fills.apply(position, &mut values);
    Ok(values)
}

/// Writes one row of `columns` from schema-ordered `values`, after checking
/// them: a value PostgreSQL would refuse (a NUL, a date beyond its range,
/// a value of the wrong type) is an [`Error::InvalidInput`] naming the
/// field. `widths` are the stored integer types where they differ.
pub(crate) fn encode_row(
    schema: &EntitySchema,
    columns: &[usize],
    widths: &[Option<ColumnType>],
    values: &[Value],
    out: &mut Vec<u8>,
) -> Result<()> {
    check_row(schema, values)?;
    out.extend_from_slice(&(columns.len() as i16).to_be_bytes());
    for (&i, width) in columns.iter().zip(widths) {
        let column = &schema.columns[i];
        match width {
            Some(stored) => crate::bind::to_stored_width(&values[i], stored, column)
                .and_then(|value| encode_field(&value, stored, out)),
            None => encode_field(&values[i], &column.ty, out),
        }
        .map_err(|reason| Error::invalid(schema.entity, column.field, reason))?;
    }
    Ok(())
}

/// Writes one field: its byte length (-1 for NULL), then its binary form.
fn encode_field(
    value: &Value,
    ty: &ColumnType,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    if matches!(value, Value::Null) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    encode_value(value, ty, out)?;
    let length =
        i32::try_from(out.len() - start - 4).map_err(|_| "a value over 2 GiB".to_owned())?;
    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

fn encode_value(
    value: &Value,
    ty: &ColumnType,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    match (value, ty) {
        (Value::Text(text), ColumnType::Text | ColumnType::Enum(_)) => {
            out.extend_from_slice(text.as_bytes())
        }
        (Value::Bool(b), ColumnType::Bool) => out.push(u8::from(*b)),
        (Value::I16(n), ColumnType::SmallInt) => out.extend_from_slice(&n.to_be_bytes()),
        (Value::I32(n), ColumnType::Int) => out.extend_from_slice(&n.to_be_bytes()),
        (Value::I64(n), ColumnType::BigInt) => out.extend_from_slice(&n.to_be_bytes()),
        (Value::F32(n), ColumnType::Real) => out.extend_from_slice(&n.to_be_bytes()),
        (Value::F64(n), ColumnType::Double) => out.extend_from_slice(&n.to_be_bytes()),
        (Value::Uuid(u), ColumnType::Uuid) => out.extend_from_slice(u.as_bytes()),
        (Value::ObjectId(o), ColumnType::ObjectId) => out.extend_from_slice(o.to_hex().as_bytes()),
        (Value::TimestampTz(t), ColumnType::TimestampTz) => {
            // `check_row` refused these already; chrono reaches 262143 BC,
            // where the plain difference overflows i64.
            let micros = pg_micros(t).ok_or_else(|| {
                format!("{t} is outside the instants PostgreSQL stores and reads back")
            })?;
            out.extend_from_slice(&micros.to_be_bytes());
        }
        (Value::Date(d), ColumnType::Date) => {
            let days = pg_days(d).ok_or_else(|| {
                format!("{d} is outside PostgreSQL's date range (4713 BC to 5874897 AD)")
            })?;
            out.extend_from_slice(&days.to_be_bytes());
        }
        (Value::Json(json), ColumnType::Json) => {
            out.push(1); // jsonb's binary format version
            serde_json::to_writer(&mut *out, json).map_err(|e| e.to_string())?;
        }
        (Value::Array(items), ColumnType::Array(inner)) => encode_array(items, inner, out)?,
        (vector, ColumnType::Vector(_)) => {
            let bytes = crate::vector::wire(vector)
                .ok_or_else(|| format!("a {} value in a vector column", vector.kind()))?;
            out.extend_from_slice(&bytes);
        }
        (other, ty) => return Err(format!("a {} value in a {ty:?} column", other.kind())),
    }
    Ok(())
}

/// A one-dimensional array: dimensions, NULL flag, element type, then the elements.
fn encode_array(
    items: &[Value],
    element: &ColumnType,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let oid = element_oid(element)
        .ok_or_else(|| format!("arrays of {element:?} are not supported by COPY"))?;
    let has_null = items.iter().any(|v| matches!(v, Value::Null));
    let length = i32::try_from(items.len()).map_err(|_| "an array over 2^31 elements")?;
    for word in [1, i32::from(has_null), oid, length, 1] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    items
        .iter()
        .try_for_each(|item| encode_field(item, element, out))
}

/// The type OID of an array element, as the binary array header names it.
fn element_oid(ty: &ColumnType) -> Option<i32> {
    Some(match ty {
        ColumnType::Text | ColumnType::Enum(_) => 25,
        ColumnType::Bool => 16,
        ColumnType::SmallInt => 21,
        ColumnType::Int => 23,
        ColumnType::BigInt => 20,
        ColumnType::Real => 700,
        ColumnType::Double => 701,
        ColumnType::Uuid => 2950,
        ColumnType::ObjectId => 25,
        ColumnType::TimestampTz => 1184,
        ColumnType::Date => 1082,
        ColumnType::Json => 3802,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: Value, ty: ColumnType) -> Vec<u8> {
        let mut out = Vec::new();
        encode_field(&value, &ty, &mut out).unwrap();
        out
    }

    #[test]
    fn fields_carry_their_length_and_null_is_minus_one() {
        assert_eq!(
            encoded(Value::Null, ColumnType::Text),
            (-1i32).to_be_bytes()
        );
        assert_eq!(
            encoded(Value::I32(7), ColumnType::Int),
            [0, 0, 0, 4, 0, 0, 0, 7]
        );
        assert_eq!(
            encoded(Value::Text("hé".into()), ColumnType::Text),
            [0, 0, 0, 3, b'h', 0xc3, 0xa9]
        );
        let json = encoded(Value::Json(serde_json::json!({"a": 1})), ColumnType::Json);
        assert_eq!(&json[4..], b"\x01{\"a\":1}");
    }

    #[test]
    fn timestamps_count_from_the_postgres_epoch() {
        let at = chrono::DateTime::from_timestamp(946_684_800, 1_000).unwrap();
        assert_eq!(
            &encoded(Value::TimestampTz(at), ColumnType::TimestampTz)[4..],
            1i64.to_be_bytes()
        );
    }

    #[test]
    fn arrays_have_a_header_and_typed_elements() {
        static TEXT: ColumnType = ColumnType::Text;
        let bytes = encoded(
            Value::Array(vec![Value::Text("x".into()), Value::Null]),
            ColumnType::Array(&TEXT),
        );
        let words: Vec<i32> = bytes[4..24]
            .chunks(4)
            .map(|w| i32::from_be_bytes(w.try_into().unwrap()))
            .collect();
        assert_eq!(words, [1, 1, 25, 2, 1]);
        assert!(!supports_nested());
    }

    fn supports_nested() -> bool {
        static INT: ColumnType = ColumnType::Int;
        static INTS: ColumnType = ColumnType::Array(&INT);
        static COLUMNS: &[reposmith_core::ColumnDef] = &[reposmith_core::ColumnDef::new(
            "m",
            "m",
            ColumnType::Array(&INTS),
            false,
        )];
        static SCHEMA: EntitySchema = EntitySchema::new(
            "M",
            "m",
            COLUMNS,
            0,
            reposmith_core::IdStrategy::Assigned,
            &[],
        );
        supports(&SCHEMA, &[0])
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        let mut out = Vec::new();
        assert!(encode_field(&Value::Text("7".into()), &ColumnType::Int, &mut out).is_err());
    }
}
