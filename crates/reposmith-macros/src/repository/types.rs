//! Reading field types syntactically, for the rules that depend on them. The
//! type checker has the last word: the generated code asserts `FieldType`
//! bounds spanned on each field.

use syn::{GenericArgument, PathArguments, Type};

/// The last path segment's name: `chrono::DateTime<Utc>` → `DateTime`.
pub(crate) fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) => path.path.segments.last().map(|s| s.ident.to_string()),
        Type::Group(group) => last_segment(&group.elem),
        Type::Paren(paren) => last_segment(&paren.elem),
        _ => None,
    }
}

/// The `T` of `Option<T>`, if `ty` is an `Option`.
pub(crate) fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let segment = path.path.segments.last()?;
    if segment.ident != "Option" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(inner) => Some(inner),
        _ => None,
    }
}

/// True when `ty` is spelled as one of `names` (by last path segment).
pub(crate) fn is_one_of(ty: &Type, names: &[&str]) -> bool {
    last_segment(ty).is_some_and(|name| names.contains(&name.as_str()))
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    #[test]
    fn reads_paths() {
        let ty: Type = parse_quote!(chrono::DateTime<chrono::Utc>);
        assert_eq!(last_segment(&ty).as_deref(), Some("DateTime"));
        let opt: Type = parse_quote!(Option<i64>);
        assert!(option_inner(&opt).is_some_and(|t| is_one_of(t, &["i64"])));
        assert!(option_inner(&ty).is_none());
    }
}
