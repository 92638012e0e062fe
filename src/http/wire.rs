//! Conversions between domain values and the types generated from the specs that more than
//! one API writes alike, so that each is written once.

/// Writes `From` between a domain enum and a generated enum with the same variants, in the
/// directions an API needs: `<=>` both ways, `=>` from the domain to the wire, `<=` from the
/// wire to the domain.
///
/// Each variant becomes the one of the same name, and every `match` it writes must be
/// exhaustive: a variant left out of the list, or missing on either side, does not compile,
/// and one listed twice is an unreachable arm, which the lints refuse. Both ways, the two
/// impls are each other's inverse by construction, which leaves nothing for a test to find.
macro_rules! same_variants {
    ($domain:ident <=> $wire:ty: $($variant:ident),+ $(,)?) => {
        $crate::http::wire::same_variants!($domain => $wire: $($variant),+);
        $crate::http::wire::same_variants!($domain <= $wire: $($variant),+);
    };
    ($domain:ident => $wire:ty: $($variant:ident),+ $(,)?) => {
        impl From<$domain> for $wire {
            fn from(value: $domain) -> Self {
                match value {
                    $($domain::$variant => Self::$variant,)+
                }
            }
        }
    };
    ($domain:ident <= $wire:ty: $($variant:ident),+ $(,)?) => {
        impl From<$wire> for $domain {
            fn from(value: $wire) -> Self {
                match value {
                    $(<$wire>::$variant => Self::$variant,)+
                }
            }
        }
    };
}

pub(crate) use same_variants;
