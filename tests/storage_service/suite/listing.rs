//! Listing orders: by user or status, newest first, page by page with a cursor.

use order_processor::generated::storage_service::client::types;
use types::OrderStatus::{Confirmed, Failed, Pending, Rejected};
use uuid::Uuid;

use super::{
    problems::{field, problem, raw_problem},
    service::start,
};

#[tokio::test]
async fn list_orders_answers_only_that_users_orders_newest_first() {
    let service = start().await;
    service.book("book-1", 10).await;
    let mut mine = Vec::new();
    for _ in 0..4 {
        mine.push(service.order("book-1", "user-1", 1).await.id);
        service.order("book-1", "user-2", 1).await;
    }

    let page = service
        .client
        .list_orders()
        .user_id("user-1")
        .send()
        .await
        .unwrap();

    assert_eq!(page.status().as_u16(), 200);
    let ids: Vec<Uuid> = page.items.iter().map(|order| order.id).collect();
    mine.reverse();
    assert_eq!(ids, mine);
    assert!(page.next_cursor.is_none());
    assert!(service.list("nobody", 10, None).await.items.is_empty());
}

#[tokio::test]
async fn list_orders_answers_20_orders_by_default() {
    let service = start().await;
    service.book("book-1", 10).await;
    for _ in 0..21 {
        service.order("book-1", "user-1", 1).await;
    }

    let page = service
        .client
        .list_orders()
        .user_id("user-1")
        .send()
        .await
        .unwrap();

    assert_eq!(page.items.len(), 20);
    assert!(page.next_cursor.is_some());
}

#[tokio::test]
async fn list_orders_filters_by_status() {
    let service = start().await;
    service.book("book-1", 10).await;
    let pending = service.order("book-1", "user-1", 1).await.id;
    let confirmed = service.order("book-1", "user-1", 1).await.id;
    let rejected = service.order("book-1", "user-1", 1).await.id;
    service.take(confirmed).await;
    service.change(confirmed, Pending, Confirmed).await.unwrap();
    service.change(rejected, Pending, Rejected).await.unwrap();

    for (status, expected) in [
        (Pending, vec![pending]),
        (Confirmed, vec![confirmed]),
        (Rejected, vec![rejected]),
        (Failed, vec![]),
    ] {
        let page = service
            .client
            .list_orders()
            .user_id("user-1")
            .status(status)
            .send()
            .await
            .unwrap();
        let ids: Vec<Uuid> = page.items.iter().map(|order| order.id).collect();
        assert_eq!(ids, expected, "{status}");
        assert!(page.items.iter().all(|order| order.status == status));
    }
}

#[tokio::test]
async fn list_orders_without_a_user_finds_pending_orders_created_before_an_instant() {
    let service = start().await;
    service.book("book-1", 10).await;
    let alice = service.order("book-1", "alice", 1).await.id;
    let bob = service.order("book-1", "bob", 1).await.id;
    let rejected = service.order("book-1", "carol", 1).await.id;
    service.change(rejected, Pending, Rejected).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cut = chrono::Utc::now();
    service.order("book-1", "dave", 1).await;

    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let mut request = service
            .client
            .list_orders()
            .status(Pending)
            .created_before(cut)
            .limit(1_u32);
        if let Some(cursor) = cursor.take() {
            request = request.cursor(cursor);
        }
        let page = request.send().await.unwrap().into_inner();
        ids.extend(page.items.iter().map(|order| order.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(ids, [bob, alice], "pending, older than the cut, every user");
}

#[tokio::test]
async fn list_orders_pages_by_cursor_without_repeating_or_skipping_while_orders_arrive() {
    let service = start().await;
    service.book("book-1", 100).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(service.order("book-1", "user-1", 1).await.id);
    }

    let first = service.list("user-1", 2, None).await;
    // Orders that arrive between pages are newer than every page: none may appear later
    // on, nor push an order seen already onto the next page.
    let newer = [
        service.order("book-1", "user-1", 1).await.id,
        service.order("book-1", "user-1", 1).await.id,
    ];
    let second = service.list("user-1", 2, first.next_cursor.as_ref()).await;
    let third = service.list("user-1", 2, second.next_cursor.as_ref()).await;

    let seen: Vec<Uuid> = [&first, &second, &third]
        .iter()
        .flat_map(|page| page.items.iter().map(|order| order.id))
        .collect();
    created.reverse();
    assert_eq!(
        seen, created,
        "each of the first five exactly once, newest first"
    );
    assert_eq!((first.items.len(), second.items.len()), (2, 2));
    assert!(third.next_cursor.is_none(), "the last page has no cursor");
    let fresh = service.list("user-1", 2, None).await;
    let fresh_ids: Vec<Uuid> = fresh.items.iter().map(|order| order.id).collect();
    assert_eq!(fresh_ids, [newer[1], newer[0]]);
}

#[tokio::test]
async fn a_last_page_that_is_exactly_full_has_no_cursor() {
    let service = start().await;
    service.book("book-1", 10).await;
    for _ in 0..4 {
        service.order("book-1", "user-1", 1).await;
    }

    let first = service.list("user-1", 2, None).await;
    let second = service.list("user-1", 2, first.next_cursor.as_ref()).await;

    assert!(first.next_cursor.is_some());
    assert_eq!(second.items.len(), 2);
    assert!(second.next_cursor.is_none());
}

#[tokio::test]
async fn list_orders_with_a_cursor_it_cannot_read_answers_400_naming_cursor() {
    let service = start().await;
    let too_long = "a".repeat(129);
    for cursor in [
        "abc",
        "0",
        "-1",
        "99999999999999999999999",
        "a.b",
        "%2F",
        "",
        too_long.as_str(),
    ] {
        let response = service
            .http
            .get(service.at(&format!("/orders?userId=user-1&cursor={cursor}")))
            .send()
            .await
            .unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), "cursor", "{cursor:?}: {problem}");
    }
}

#[tokio::test]
async fn list_orders_refuses_a_bad_user_limit_or_status_with_400_naming_the_parameter() {
    let service = start().await;
    for (query, name) in [
        ("userId=", "userId"),
        ("userId=a%2Fb", "userId"),
        ("userId=a%01b", "userId"),
        ("userId=u&limit=0", "limit"),
        ("userId=u&limit=101", "limit"),
        ("userId=u&limit=ten", "limit"),
        ("userId=u&status=shipped", "status"),
        ("createdBefore=yesterday", "createdBefore"),
    ] {
        let response = service
            .http
            .get(service.at(&format!("/orders?{query}")))
            .send()
            .await
            .unwrap();
        let problem = raw_problem(response, 400).await;
        assert_eq!(field(&problem), name, "{query}: {problem}");
    }
    // The typed client lets 101 through, so the server is the one that refuses it.
    problem(
        service
            .client
            .list_orders()
            .user_id("u")
            .limit(101_u32)
            .send()
            .await,
        400,
    );
}
