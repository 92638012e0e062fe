//! The flow that places an order.
