//! Rust names for the spec's names: identifiers, fields, types, enum variants and the
//! variants of response enums.

use heck::{ToSnakeCase, ToUpperCamelCase};
use proc_macro2::{Ident, Span};
use quote::format_ident;

/// The name as an identifier, unchanged.
pub(crate) fn ident(name: &str) -> Ident {
    Ident::new(name, Span::call_site())
}

/// A snake_case Rust identifier for a JSON name; `type` and other keywords get a trailing `_`.
pub(crate) fn field_ident(name: &str) -> Ident {
    let snake = name.to_snake_case();
    if syn::parse_str::<Ident>(&snake).is_ok() {
        ident(&snake)
    } else {
        format_ident!("{snake}_")
    }
}

/// An UpperCamelCase identifier: a tag's or an enum value's variant.
pub(crate) fn variant_ident(name: &str) -> Ident {
    ident(&name.to_upper_camel_case())
}

/// The response enum of an operation: `createOrder` answers with `CreateOrderResponse`.
pub(crate) fn response_ident(operation_id: &str) -> Ident {
    format_ident!("{}Response", operation_id.to_upper_camel_case())
}

/// The function that parses one property of an object schema.
pub(crate) fn field_parser_ident(schema: &str, property: &str) -> Ident {
    format_ident!("parse_{}_{}", schema.to_snake_case(), field_ident(property))
}

/// The response enum variant for a status: its reason phrase in UpperCamelCase; `None` for
/// a status the generator does not know.
pub(crate) fn status_variant(code: u16) -> Option<Ident> {
    let reason = match code {
        200 => "Ok",
        201 => "Created",
        202 => "Accepted",
        204 => "NoContent",
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        412 => "PreconditionFailed",
        413 => "PayloadTooLarge",
        415 => "UnsupportedMediaType",
        422 => "UnprocessableEntity",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => return None,
    };
    Some(ident(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_become_snake_case() {
        assert_eq!(field_ident("bookId").to_string(), "book_id");
        assert_eq!(field_ident("nextCursor").to_string(), "next_cursor");
        assert_eq!(
            field_ident("Idempotency-Key").to_string(),
            "idempotency_key"
        );
        assert_eq!(field_ident("quantity").to_string(), "quantity");
    }

    #[test]
    fn keywords_get_a_trailing_underscore() {
        assert_eq!(field_ident("type").to_string(), "type_");
        assert_eq!(field_ident("match").to_string(), "match_");
        assert_eq!(field_ident("self").to_string(), "self_");
    }

    #[test]
    fn tags_and_enum_values_become_upper_camel_case() {
        assert_eq!(variant_ident("orders").to_string(), "Orders");
        assert_eq!(variant_ident("out-of-stock").to_string(), "OutOfStock");
        assert_eq!(variant_ident("in_progress").to_string(), "InProgress");
    }

    #[test]
    fn operations_name_their_response_enum() {
        assert_eq!(
            response_ident("createOrder").to_string(),
            "CreateOrderResponse"
        );
        assert_eq!(response_ident("health").to_string(), "HealthResponse");
    }

    #[test]
    fn each_property_has_its_own_parser() {
        assert_eq!(
            field_parser_ident("CreateOrderRequest", "bookId").to_string(),
            "parse_create_order_request_book_id"
        );
        assert_eq!(
            field_parser_ident("Problem", "type").to_string(),
            "parse_problem_type_"
        );
    }

    #[test]
    fn statuses_become_their_reason_phrase() {
        let variant = |code| status_variant(code).map(|ident| ident.to_string());
        assert_eq!(variant(200).as_deref(), Some("Ok"));
        assert_eq!(variant(201).as_deref(), Some("Created"));
        assert_eq!(variant(204).as_deref(), Some("NoContent"));
        assert_eq!(variant(422).as_deref(), Some("UnprocessableEntity"));
        assert_eq!(variant(503).as_deref(), Some("ServiceUnavailable"));
        assert_eq!(variant(418), None);
        assert_eq!(variant(299), None);
    }
}
