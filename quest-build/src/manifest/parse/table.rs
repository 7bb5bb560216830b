//! [`manifest_table!`]: one description of a manifest table's keys, from which the model
//! struct, the draft struct, the accepted-key list, the reading of a table into a draft
//! and the completion of a draft into the model are all derived.

/// Describes a manifest table once. For each key: its doc (the model field's doc), its
/// name (the field's), its model type, how it is read (a [`super::fields::Field`]),
/// whether it is `required` or `optional` (a missing required key is reported; an
/// optional one takes its kind's default), and an example (used in hints).
///
/// Generates the model struct `$Model` (public), the draft struct `$Draft` (the table's
/// header span, then each key as its kind reads it), the key list `$KEYS` (in declaration
/// order: the order keys are read, listed in hints and reported missing),
/// `$Draft::read` (unknown keys, then each key) and `$Draft::complete` (the model, if
/// every required value was read).
macro_rules! manifest_table {
    (
        $(#[$meta:meta])*
        table $what:literal => $Model:ident, $Draft:ident, $KEYS:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident: $Type:ty = $Kind:ty, $req:ident, $example:literal;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $Model {
            $( $(#[$fmeta])* pub $field: $Type, )*
        }

        #[doc = concat!($what, " as far as it could be read.")]
        #[derive(Clone, Debug)]
        pub(crate) struct $Draft {
            /// Where the table starts (missing keys are reported there).
            #[allow(dead_code)]
            pub header: $crate::manifest::types::Span,
            $( pub $field: <$Kind as $crate::manifest::parse::fields::Field>::Draft, )*
        }

        #[doc = concat!("The keys ", $what, " accepts.")]
        pub(crate) const $KEYS: &[$crate::manifest::schema::Key] = &[
            $( $crate::manifest::schema::Key {
                name: stringify!($field),
                example: $example,
                required: $crate::manifest::parse::table::manifest_table!(@required $req),
            }, )*
        ];

        impl $Draft {
            /// Reads the table at `header`, reporting unknown keys and what cannot be read.
            pub(crate) fn read(
                r: &mut $crate::manifest::parse::reader::Reader<'_>,
                t: &dyn toml_edit::TableLike,
                header: $crate::manifest::types::Span,
            ) -> Self {
                r.unknown_keys(t, $KEYS, $what, header.clone());
                let mut keys = $KEYS.iter();
                $(
                    let key = keys.next().expect("one key per field");
                    let $field = <$Kind as $crate::manifest::parse::fields::Field>::read(
                        r, t, &header, $what, key,
                    );
                )*
                Self { header, $( $field, )* }
            }

            /// The model, if every required value was read.
            pub(crate) fn complete(self) -> Option<$Model> {
                Some($Model {
                    $( $field: $crate::manifest::parse::fields::Complete::complete(
                        self.$field,
                    )?, )*
                })
            }
        }
    };
    (@required required) => { true };
    (@required optional) => { false };
}

pub(crate) use manifest_table;
