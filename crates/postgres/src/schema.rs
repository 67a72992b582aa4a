//! The tables as diesel sees them. Only the columns this crate reads or writes are declared:
//! `markets.embedding` and `markets.search_document` belong to the search adapters.

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        role -> Text,
        token_epoch -> BigInt,
        email_verified -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    markets (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        status -> Text,
        volume -> Numeric,
        creator_id -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> Int8,
    }
}

diesel::table! {
    /// How many markets have each status, spread over shards; kept by triggers (see the
    /// `market_counts` migration).
    market_counts (status, shard) {
        status -> Text,
        shard -> Int2,
        count -> Int8,
    }
}

diesel::joinable!(markets -> users (creator_id));
diesel::allow_tables_to_appear_in_same_query!(markets, users);

diesel::table! {
    idempotency_keys (user_id, idempotency_key) {
        user_id -> Uuid,
        idempotency_key -> Text,
        fingerprint -> Text,
        market_id -> Uuid,
        response -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}
