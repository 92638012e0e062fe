//! Checked values and records. A value of these types has passed its rules once, at the
//! boundary where it was parsed; the rest of the code never sees an unchecked string.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Longest book or user id, in characters.
pub const MAX_ID_CHARS: usize = 64;

/// Ids are non-empty, at most 64 characters, and hold no control character or `/`, so that
/// they are safe in a path segment and in a log line.
fn parse_id(value: &str, what: &str) -> Result<String, InvalidValue> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_ID_CHARS {
        return Err(InvalidValue(format!(
            "{what} must have 1 to {MAX_ID_CHARS} characters"
        )));
    }
    if value.chars().any(|c| c.is_control() || c == '/') {
        return Err(InvalidValue(format!(
            "{what} must not contain control characters or '/'"
        )));
    }
    Ok(value.to_owned())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, InvalidValue> {
                parse_id(value, $what).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Id of a book in the catalogue.
    BookId,
    "bookId"
);
id_type!(
    /// Id of the user who buys.
    UserId,
    "userId"
);

/// Id of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(pub Uuid);

impl OrderId {
    /// A new id, time-ordered so that ids sort roughly by creation.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A client's idempotency key: printable ASCII, 1 to 128 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Namespace of the order ids derived from idempotency keys.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x5c1e_62a4_8f0b_4f7e_9a51_0d3c_7b2e_91f4);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        if value.is_empty()
            || value.len() > 128
            || !value.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(InvalidValue(
                "Idempotency-Key must have 1 to 128 printable ASCII characters".to_owned(),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The order id this key stands for when `user` sends it. Deriving it, instead of storing
    /// a key table, makes the Storage Service's create-once-per-id rule the idempotency
    /// guarantee: the same user and key always name the same order, on every replica, for as
    /// long as the order is kept. The user is part of the name, so that two users who happen
    /// to choose the same key place two orders, and a key alone does not give away an id.
    pub fn order_id(&self, user: &UserId) -> OrderId {
        // A user id holds no control character, so the NUL separator keeps every
        // (user, key) pair apart: ("a", "b\0c") cannot collide with ("a\0b", "c").
        let mut name = Vec::with_capacity(user.as_str().len() + 1 + self.0.len());
        name.extend_from_slice(user.as_str().as_bytes());
        name.push(0);
        name.extend_from_slice(self.0.as_bytes());
        OrderId(Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, &name))
    }
}

/// Number of copies in one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(u32);

impl Quantity {
    /// At most 1000 copies in one order: far above any real purchase, and it keeps every
    /// total far inside 64 bits.
    pub const MAX: u32 = 1000;

    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        match u32::try_from(value) {
            Ok(value) if (1..=Self::MAX).contains(&value) => Ok(Self(value)),
            _ => Err(InvalidValue(format!(
                "quantity must be between 1 and {}",
                Self::MAX
            ))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Copies of a book in stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stock(i64);

impl Stock {
    pub const MAX: i64 = 1_000_000_000;

    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        if (0..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidValue(format!(
                "stock must be between 0 and {}",
                Self::MAX
            )))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// An amount in minor units of its currency (cents), never a binary fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(i64);

impl Money {
    /// The largest price of one copy: a billion in major units.
    pub const MAX_PRICE: i64 = 100_000_000_000;
    /// The largest amount: the largest price times the largest quantity, so that every total
    /// of a valid order is a valid amount.
    pub const MAX: i64 = Self::MAX_PRICE * Quantity::MAX as i64;

    pub fn new(minor_units: i64) -> Result<Self, InvalidValue> {
        Self::bounded(minor_units, Self::MAX, "an amount")
    }

    /// The price of one copy, which `MAX_PRICE` bounds.
    pub fn price(minor_units: i64) -> Result<Self, InvalidValue> {
        Self::bounded(minor_units, Self::MAX_PRICE, "a price")
    }

    fn bounded(minor_units: i64, max: i64, what: &str) -> Result<Self, InvalidValue> {
        if (0..=max).contains(&minor_units) {
            Ok(Self(minor_units))
        } else {
            Err(InvalidValue(format!(
                "{what} must be between 0 and {max} minor units"
            )))
        }
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }

    /// The total of `quantity` copies at this price: at most `MAX` for a price, and far
    /// inside 64 bits for any amount.
    pub fn times(self, quantity: Quantity) -> Money {
        Money(self.0 * i64::from(quantity.get()))
    }
}

/// An ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Currency(String);

impl Currency {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidValue(
                "currency must be three upper-case letters (ISO 4217)".to_owned(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an order stands. `Pending` moves by a status change; `Confirmed` only by a
/// cancel, which gives its stock back in the same step; the others are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Rejected,
    Failed,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value {
            "pending" => Ok(Self::Pending),
            "confirmed" => Ok(Self::Confirmed),
            "rejected" => Ok(Self::Rejected),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(InvalidValue(format!("unknown order status {other:?}"))),
        }
    }

    /// Whether a status change may move an order from `self` to `to`. A cancel is not a
    /// status change: it must give the stock back in the same step.
    pub fn can_become(self, to: OrderStatus) -> bool {
        self == Self::Pending && !matches!(to, Self::Pending | Self::Cancelled)
    }
}

/// A book, its price and its stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    pub id: BookId,
    pub details: BookDetails,
}

/// What can be set on a book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookDetails {
    pub title: String,
    pub author: String,
    pub price: Money,
    pub currency: Currency,
    pub stock: Stock,
}

impl BookDetails {
    pub fn with_id(self, id: BookId) -> Book {
        Book { id, details: self }
    }
}

/// An order to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub id: OrderId,
    pub book_id: BookId,
    pub user_id: UserId,
    pub quantity: Quantity,
}

/// A recorded order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub book_id: BookId,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub stock_held: bool,
    pub unit_price: Money,
    pub total_price: Money,
    pub currency: Currency,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// Whether `new` asks for the same order as this record.
    pub fn matches(&self, new: &NewOrder) -> bool {
        self.id == new.id
            && self.book_id == new.book_id
            && self.user_id == new.user_id
            && self.quantity == new.quantity
    }
}

/// The result of recording an order: the record, and whether this call created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub order: Order,
    pub created: bool,
}

/// A compare-and-set status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub from: OrderStatus,
    pub to: OrderStatus,
    pub reason: Option<String>,
}

/// Where an order's claim on its stock stands. `Returned` and `Refused` are final: either
/// closes the allocation, so that no late or repeated take can take stock for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocationState {
    /// The order holds its stock.
    Held,
    /// The order gave its stock back, or gave up before taking any.
    Returned,
    /// The order tried to take its stock and there was not enough. Recorded, so that a
    /// retry of the order meets the same refusal instead of a closed allocation it cannot
    /// explain.
    Refused,
}

impl AllocationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Returned => "returned",
            Self::Refused => "refused",
        }
    }

    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        match value {
            "held" => Ok(Self::Held),
            "returned" => Ok(Self::Returned),
            "refused" => Ok(Self::Refused),
            other => Err(InvalidValue(format!("unknown allocation state {other:?}"))),
        }
    }
}

/// The stock an order took, and the book's stock after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockAllocation {
    pub order_id: OrderId,
    pub book_id: BookId,
    pub quantity: Quantity,
    pub state: AllocationState,
    pub book_stock: Stock,
}

/// Size of a page of orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u32);

impl PageLimit {
    pub const MAX: u32 = 100;
    pub const DEFAULT: PageLimit = PageLimit(20);
    pub const MAX_PAGE: PageLimit = PageLimit(Self::MAX);

    pub fn new(value: i64) -> Result<Self, InvalidValue> {
        match u32::try_from(value) {
            Ok(value) if (1..=Self::MAX).contains(&value) => Ok(Self(value)),
            _ => Err(InvalidValue(format!(
                "limit must be between 1 and {}",
                Self::MAX
            ))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// An opaque position in a list of orders, issued by the storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQuery {
    /// Only this user's orders; every user's when `None`, as recovery reads them.
    pub user_id: Option<UserId>,
    pub status: Option<OrderStatus>,
    /// Only orders created strictly before this instant.
    pub created_before: Option<DateTime<Utc>>,
    pub limit: PageLimit,
    pub cursor: Option<Cursor>,
}

/// One page of a list, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_empty_long_slash_and_control_characters() {
        assert!(BookId::parse("").is_err());
        assert!(BookId::parse(&"x".repeat(65)).is_err());
        assert!(BookId::parse("a/b").is_err());
        assert!(BookId::parse("a\u{7}b").is_err());
        assert!(BookId::parse("a\u{85}b").is_err());
        assert_eq!(
            BookId::parse(&"é".repeat(64))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            64
        );
    }

    #[test]
    fn quantity_accepts_1_to_1000_only() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-1).is_err());
        assert!(Quantity::new(1001).is_err());
        assert_eq!(Quantity::new(1000).unwrap().get(), 1000);
    }

    #[test]
    fn the_same_user_and_key_always_name_the_same_order() {
        let user = UserId::parse("user-1").unwrap();
        let key = IdempotencyKey::parse("retry-me").unwrap();
        assert_eq!(
            key.order_id(&user),
            IdempotencyKey::parse("retry-me").unwrap().order_id(&user)
        );
        assert_ne!(
            key.order_id(&user),
            IdempotencyKey::parse("other").unwrap().order_id(&user)
        );
        assert!(IdempotencyKey::parse("has space").is_err());
    }

    #[test]
    fn two_users_with_the_same_key_name_two_orders() {
        let key = IdempotencyKey::parse("purchase-0001").unwrap();
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert_ne!(key.order_id(&alice), key.order_id(&bob));
        // The separator keeps the user and the key apart.
        let split_one = IdempotencyKey::parse("b-c").unwrap().order_id(&alice);
        let split_two = IdempotencyKey::parse("c")
            .unwrap()
            .order_id(&UserId::parse("aliceb-").unwrap());
        assert_ne!(split_one, split_two);
    }

    #[test]
    fn only_pending_orders_change_status() {
        assert!(OrderStatus::Pending.can_become(OrderStatus::Confirmed));
        assert!(!OrderStatus::Pending.can_become(OrderStatus::Pending));
        assert!(!OrderStatus::Confirmed.can_become(OrderStatus::Failed));
        assert!(!OrderStatus::Pending.can_become(OrderStatus::Cancelled));
        assert!(!OrderStatus::Confirmed.can_become(OrderStatus::Cancelled));
    }

    #[test]
    fn statuses_and_allocation_states_read_back_from_their_text() {
        use OrderStatus::*;
        for status in [Pending, Confirmed, Rejected, Failed, Cancelled] {
            assert_eq!(OrderStatus::parse(status.as_str()), Ok(status));
        }
        for state in [
            AllocationState::Held,
            AllocationState::Returned,
            AllocationState::Refused,
        ] {
            assert_eq!(AllocationState::parse(state.as_str()), Ok(state));
        }
        assert!(OrderStatus::parse("Pending").is_err());
        assert!(AllocationState::parse("taken").is_err());
    }
}
