//! Conversions between domain values and the types generated from the specs that more than
//! one API writes alike, so that each is written once.

use crate::domain::{
    model::{BookId, Cursor, OrderQuery, PageLimit, Quantity, UserId},
    orders::OrderRequest,
};

use super::problem::Problem;

/// Writes `From` between a domain enum and a generated enum with the same variants, in the
/// directions an API needs: `<=>` both ways, `=>` from the domain to the wire, `<=` from the
/// wire to the domain.
///
/// Each variant becomes the one of the same name. A variant of the enum converted from that
/// the list leaves out makes the `match` non-exhaustive, one that the other enum lacks is an
/// unknown name, and one listed twice is an unreachable arm, which the lints refuse: so every
/// impl is total, and with `<=>` the two are each other's inverse, with nothing left for a
/// test to find.
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

/// Writes `From<Order>` for a server's generated `Order` and `From<Page<Order>>` for its
/// `OrderPage`. Both contracts describe an order alike; the fields named after the two types
/// are those that only this contract has, copied as the domain holds them.
macro_rules! order_to_wire {
    ($order:ty, $page:ty $(, $extra:ident)* $(,)?) => {
        impl From<$crate::domain::model::Order> for $order {
            fn from(order: $crate::domain::model::Order) -> Self {
                Self {
                    id: order.id.0,
                    book_id: order.book_id.to_string(),
                    user_id: order.user_id.to_string(),
                    quantity: $crate::http::wire::quantity(order.quantity),
                    status: order.status.into(),
                    reason: order.reason,
                    $($extra: order.$extra,)*
                    unit_price: order.unit_price.minor_units(),
                    total_price: order.total_price.minor_units(),
                    currency: order.currency.as_str().to_owned(),
                    created_at: order.created_at,
                    updated_at: order.updated_at,
                }
            }
        }

        impl From<$crate::domain::model::Page<$crate::domain::model::Order>> for $page {
            fn from(page: $crate::domain::model::Page<$crate::domain::model::Order>) -> Self {
                Self {
                    items: page.items.into_iter().map(Into::into).collect(),
                    next_cursor: page.next_cursor.map(|cursor| cursor.0),
                }
            }
        }
    };
}

pub(crate) use order_to_wire;

/// Bounded to 1000 by `Quantity`, so the cast never truncates.
pub fn quantity(quantity: Quantity) -> i32 {
    quantity.get() as i32
}

/// The book, user and quantity of an order as both servers take them in a body: a purchase
/// and the record of one. A value the domain refuses is a 400 that names its field.
pub fn order_request(book_id: &str, user_id: &str, quantity: i32) -> Result<OrderRequest, Problem> {
    Ok(OrderRequest {
        book_id: BookId::parse(book_id).map_err(|err| Problem::invalid_field("/bookId", err.0))?,
        user_id: UserId::parse(user_id).map_err(|err| Problem::invalid_field("/userId", err.0))?,
        quantity: Quantity::new(quantity.into())
            .map_err(|err| Problem::invalid_field("/quantity", err.0))?,
    })
}

/// A page of orders as both servers' list operations ask for it: of one user or of all,
/// with no other filter. A value the domain refuses is a 400 that names its parameter.
pub fn order_query(
    user_id: Option<&str>,
    limit: i32,
    cursor: Option<String>,
) -> Result<OrderQuery, Problem> {
    Ok(OrderQuery {
        user_id: user_id
            .map(UserId::parse)
            .transpose()
            .map_err(|err| Problem::invalid_field("userId", err.0))?,
        status: None,
        created_before: None,
        limit: PageLimit::new(limit.into())
            .map_err(|err| Problem::invalid_field("limit", err.0))?,
        cursor: cursor.map(Cursor),
    })
}
