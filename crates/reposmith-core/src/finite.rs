//! Finds NaN and ±Infinity in a value before it is stored as JSON.
//!
//! `serde_json` writes a non-finite float as `null` without an error, so a
//! `#[repo(json)]` struct holding `f64::NAN` would be stored with its number
//! silently replaced. This serializer walks the value, ignores everything
//! but floats, and reports the path of the first non-finite one. It is
//! hand-written because no maintained crate offers the check.

use std::fmt::{self, Display};

use serde::ser::{self, Serialize};

/// Where the first non-finite float sits, as a JSON-path-like string (`.a.b[2]`).
#[derive(Debug)]
pub struct NonFinite(pub String);

impl Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "non-finite number at {}",
            if self.0.is_empty() {
                "the top level"
            } else {
                &self.0
            }
        )
    }
}

impl std::error::Error for NonFinite {}

impl ser::Error for NonFinite {
    fn custom<T: Display>(msg: T) -> Self {
        NonFinite(msg.to_string())
    }
}

/// `Ok(())` when every float in `value` is finite.
pub fn check<T: Serialize + ?Sized>(value: &T) -> Result<(), NonFinite> {
    value.serialize(Walker {
        path: String::new(),
    })
}

/// A serializer that produces nothing and fails on a non-finite float.
struct Walker {
    path: String,
}

impl Walker {
    fn float(self, v: f64) -> Result<(), NonFinite> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(NonFinite(self.path))
        }
    }

    fn child(&self, segment: impl Display) -> Walker {
        Walker {
            path: format!("{}{segment}", self.path),
        }
    }
}

/// A compound (sequence, map, struct) being walked.
struct Compound {
    walker: Walker,
    index: usize,
}

/// Methods whose values cannot hold a float.
macro_rules! ignore {
    ($($name:ident($ty:ty)),*) => {
        $(fn $name(self, _: $ty) -> Result<(), NonFinite> { Ok(()) })*
    };
}

impl ser::Serializer for Walker {
    type Ok = ();
    type Error = NonFinite;
    type SerializeSeq = Compound;
    type SerializeTuple = Compound;
    type SerializeTupleStruct = Compound;
    type SerializeTupleVariant = Compound;
    type SerializeMap = Compound;
    type SerializeStruct = Compound;
    type SerializeStructVariant = Compound;

    ignore!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str)
    );

    fn serialize_f32(self, v: f32) -> Result<(), NonFinite> {
        self.float(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), NonFinite> {
        self.float(v)
    }

    fn serialize_none(self) -> Result<(), NonFinite> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NonFinite> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), NonFinite> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), NonFinite> {
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), NonFinite> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), NonFinite> {
        value.serialize(self.child(format_args!(".{variant}")))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound, NonFinite> {
        Ok(Compound {
            walker: self,
            index: 0,
        })
    }

    fn serialize_tuple(self, _: usize) -> Result<Compound, NonFinite> {
        self.serialize_seq(None)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound, NonFinite> {
        self.serialize_seq(None)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Compound, NonFinite> {
        self.child(format_args!(".{v}")).serialize_seq(None)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound, NonFinite> {
        self.serialize_seq(None)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound, NonFinite> {
        self.serialize_seq(None)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        v: &'static str,
        _: usize,
    ) -> Result<Compound, NonFinite> {
        self.child(format_args!(".{v}")).serialize_seq(None)
    }
}

impl Compound {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
        let child = self.walker.child(format_args!("[{}]", self.index));
        self.index += 1;
        value.serialize(child)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), NonFinite> {
        value.serialize(self.walker.child(format_args!(".{key}")))
    }
}

/// The sequence-like compounds: every element is walked with its index.
macro_rules! sequence {
    ($($trait:ident :: $method:ident),*) => {
        $(impl ser::$trait for Compound {
            type Ok = ();
            type Error = NonFinite;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
                self.element(value)
            }

            fn end(self) -> Result<(), NonFinite> {
                Ok(())
            }
        })*
    };
}

sequence!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound {
    type Ok = ();
    type Error = NonFinite;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, _: &T) -> Result<(), NonFinite> {
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NonFinite> {
        self.element(value)
    }

    fn end(self) -> Result<(), NonFinite> {
        Ok(())
    }
}

/// The struct-like compounds: every field is walked with its name.
macro_rules! fields {
    ($($trait:ident),*) => {
        $(impl ser::$trait for Compound {
            type Ok = ();
            type Error = NonFinite;

            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), NonFinite> {
                self.field(key, value)
            }

            fn end(self) -> Result<(), NonFinite> {
                Ok(())
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::check;

    #[derive(Serialize)]
    struct Stats {
        name: String,
        scores: Vec<f64>,
        nested: Option<Inner>,
    }

    #[derive(Serialize)]
    struct Inner {
        ratio: f32,
    }

    #[test]
    fn finds_the_path_of_a_non_finite_float() {
        let ok = Stats {
            name: "a".into(),
            scores: vec![1.0, 2.5],
            nested: Some(Inner { ratio: 0.5 }),
        };
        assert!(check(&ok).is_ok());
        let bad = Stats {
            name: "a".into(),
            scores: vec![1.0, f64::NAN],
            nested: None,
        };
        assert_eq!(check(&bad).unwrap_err().0, ".scores[1]");
        let inf = Stats {
            name: "a".into(),
            scores: vec![],
            nested: Some(Inner {
                ratio: f32::INFINITY,
            }),
        };
        assert_eq!(check(&inf).unwrap_err().0, ".nested.ratio");
        let map: BTreeMap<&str, f64> = [("x", f64::NEG_INFINITY)].into();
        assert!(check(&map).is_err());
        assert_eq!(
            check(&f64::NAN).unwrap_err().to_string(),
            "non-finite number at the top level"
        );
    }
}
