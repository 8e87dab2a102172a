//! The static `EntitySchema` and the per-field type checks.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};

use crate::naming::index_name;
use crate::repository::kinds::{BackendChoice, Reads};
use crate::repository::model::{
    CacheModel, Entity, Field, IdKind, Role, Storage, VectorIndexModel, VectorModel,
};
use crate::repository::search_rules::FULL_TEXT_COLUMN;
use crate::repository::types::option_inner;

/// `static __REPOSMITH_SCHEMA: EntitySchema = ...;`
pub(super) fn schema_static(entity: &Entity) -> TokenStream {
    let name = entity.ident.to_string();
    let table = &entity.table;
    let columns = entity.columns().map(column_def);
    let id = entity.id_position();
    let strategy = match entity.id_kind {
        IdKind::Uuid => quote!(ClientUuid),
        IdKind::ObjectId => quote!(ClientObjectId),
        IdKind::Identity => quote!(Identity),
        IdKind::Assigned => quote!(Assigned),
    };
    let indexes = entity
        .columns()
        .filter_map(|f| index_def(entity, f))
        .chain(full_text_index(entity));
    let with_schema = entity.schema.as_ref().map(|s| quote!(.with_schema(#s)));
    let with_collection = entity
        .collection
        .as_ref()
        .map(|c| quote!(.with_collection(#c)));
    let with_backends = (entity.backends != BackendChoice::Both).then(|| {
        let backends = format_ident!("{}", entity.backends.variant());
        quote!(.with_backends(::reposmith::__private::Backends::#backends))
    });
    // Absent, the schema keeps `ReadPreference::Replica`.
    let with_reads = (entity.reads != Reads::Replica).then(|| {
        let reads = format_ident!("{}", entity.reads.variant());
        quote!(.with_reads(::reposmith::__private::ReadPreference::#reads))
    });
    let with_cache = entity.cache.map(|cache| {
        let CacheModel {
            ttl_ms,
            negative_ttl_ms,
            shape,
        } = cache;
        // The shape as hex, so a reader of the expansion sees a hash.
        let shape = syn::LitInt::new(
            &format!("0x{shape:016x}_u64"),
            proc_macro2::Span::call_site(),
        );
        quote! {
            .with_cache(::reposmith::__private::CacheSpec::new(#ttl_ms, #negative_ttl_ms, #shape))
        }
    });
    quote! {
        static __REPOSMITH_SCHEMA: ::reposmith::__private::EntitySchema =
            ::reposmith::__private::EntitySchema::new(
                #name,
                #table,
                &[#(#columns),*],
                #id,
                ::reposmith::__private::IdStrategy::#strategy,
                &[#(#indexes),*],
            )
            #with_schema
            #with_collection
            #with_backends
            #with_reads
            #with_cache;
    }
}

fn column_def(field: &Field) -> TokenStream {
    let name = field.ident.to_string();
    let column = &field.column;
    let ty = &field.ty;
    // One spanned use of the type carries both facts, so an unsupported type
    // is reported here once, pointing at the field's type.
    let meta = match field.storage {
        Storage::Json => {
            let nullable = option_inner(ty).is_some();
            quote!((::reposmith::__private::ColumnType::Json, #nullable))
        }
        _ => quote_spanned!(field.span=> ::reposmith::__private::column_meta::<#ty>()),
    };
    let role = match field.role {
        Role::Data => None,
        Role::Id => Some(quote!(Id)),
        Role::Version => Some(quote!(Version)),
        Role::CreatedAt => Some(quote!(CreatedAt)),
        Role::UpdatedAt => Some(quote!(UpdatedAt)),
        Role::SoftDelete => Some(quote!(SoftDelete)),
        Role::Tenant => Some(quote!(Tenant)),
    };
    let role = role.map(|r| quote!(.with_role(::reposmith::__private::ColumnRole::#r)));
    let unique = field.unique.then(|| quote!(.with_unique()));
    let default = field
        .default_sql
        .as_ref()
        .map(|d| quote!(.with_default(#d)));
    let vector = field.vector.as_ref().map(|v| {
        let spec = vector_spec(v);
        quote!(.with_vector(#spec))
    });
    let full_text = field
        .full_text
        .as_ref()
        .map(|l| quote!(.with_full_text(#l)));
    let embed = field
        .embed_from
        .as_ref()
        .map(|source| quote!(.with_embed_from(#source)));
    let renamed = field
        .renamed_from
        .as_ref()
        .map(|old| quote!(.with_renamed_from(#old)));
    let ttl = field.ttl_seconds.map(|secs| quote!(.with_ttl(#secs)));
    let references = field.references.as_ref().map(|r| {
        let target = &r.target;
        let on_delete = format_ident!("{}", r.on_delete);
        quote! {
            .with_references(::reposmith::__private::Reference::new(
                ::reposmith::__private::schema_of::<#target>,
                ::reposmith::__private::OnDelete::#on_delete,
            ))
        }
    });
    quote! {
        ::reposmith::__private::ColumnDef::from_meta(#name, #column, #meta)
            #role #unique #default #vector #full_text #embed #renamed #ttl #references
    }
}

/// A unique or plain index (see `naming::index_name`);
/// plain indexes on JSON columns use GIN so containment filters can use them.
fn index_def(entity: &Entity, field: &Field) -> Option<TokenStream> {
    if let Some(vector) = &field.vector {
        return vector_index_def(entity, field, vector);
    }
    // A reference is indexed so loading children and the foreign key's
    // checks on a parent's delete do not scan the table.
    if !field.unique && !field.index && field.references.is_none() {
        return None;
    }
    let unique = field.unique;
    let name = index_name(&entity.table, &field.column, unique);
    let column = &field.column;
    let method = match field.storage {
        Storage::Json => quote!(Gin),
        _ => quote!(BTree),
    };
    Some(quote! {
        ::reposmith::__private::IndexDef::new(
            #name, &[#column], #unique, ::reposmith::__private::IndexMethod::#method,
        )
    })
}

fn vector_spec(v: &VectorModel) -> TokenStream {
    let kind = format_ident!("{}", v.kind.variant());
    let distance = format_ident!("{}", v.distance.variant());
    let dims = v.dims;
    let index = match v.index {
        VectorIndexModel::None => quote!(None),
        VectorIndexModel::Hnsw { m, ef_construction } => {
            quote!(Hnsw { m: #m, ef_construction: #ef_construction })
        }
        VectorIndexModel::IvfFlat { lists } => quote!(IvfFlat { lists: #lists }),
    };
    quote! {
        ::reposmith::__private::VectorSpec::new(
            ::reposmith::__private::VectorKind::#kind,
            #dims,
            ::reposmith::__private::Distance::#distance,
            ::reposmith::__private::VectorIndex::#index,
        )
    }
}

/// The HNSW or IVFFlat index of a vector column. It is built for the
/// column's distance: the Postgres backend derives the operator class from
/// the column's `VectorSpec` when it writes the DDL.
fn vector_index_def(entity: &Entity, field: &Field, v: &VectorModel) -> Option<TokenStream> {
    let method = match v.index {
        VectorIndexModel::None => return None,
        VectorIndexModel::Hnsw { m, ef_construction } => {
            quote!(Hnsw { m: #m, ef_construction: #ef_construction })
        }
        VectorIndexModel::IvfFlat { lists } => quote!(IvfFlat { lists: #lists }),
    };
    let name = index_name(&entity.table, &field.column, false);
    let column = &field.column;
    Some(quote! {
        ::reposmith::__private::IndexDef::new(
            #name, &[#column], false, ::reposmith::__private::IndexMethod::#method,
        )
    })
}

/// The GIN index on the generated full-text column, when there is one.
fn full_text_index(entity: &Entity) -> Option<TokenStream> {
    entity.columns().find(|f| f.full_text.is_some())?;
    let name = index_name(&entity.table, FULL_TEXT_COLUMN, false);
    Some(quote! {
        ::reposmith::__private::IndexDef::new(
            #name, &[#FULL_TEXT_COLUMN], false, ::reposmith::__private::IndexMethod::Gin,
        )
    })
}
