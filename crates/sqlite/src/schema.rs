//! The tables as diesel sees them (see `migrations/sqlite/`). The FTS5 table, the embeddings and
//! the job queue are queried in SQL text by their modules.

diesel::table! {
    users (id) {
        id -> Binary,
        email -> Text,
        display_name -> Text,
        password_hash -> Text,
        role -> Text,
        token_epoch -> BigInt,
        email_verified -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    markets (row_id) {
        row_id -> BigInt,
        id -> Binary,
        name -> Text,
        description -> Text,
        status -> Text,
        volume_cents -> BigInt,
        creator_id -> Binary,
        created_at -> BigInt,
        updated_at -> BigInt,
        version -> BigInt,
    }
}

diesel::table! {
    /// How many markets have each status; kept by triggers (see the `market_counts` migration).
    market_counts (status) {
        status -> Text,
        count -> BigInt,
    }
}

diesel::joinable!(markets -> users (creator_id));
diesel::allow_tables_to_appear_in_same_query!(markets, users);

diesel::table! {
    idempotency_keys (user_id, idempotency_key) {
        user_id -> Binary,
        idempotency_key -> Text,
        fingerprint -> Text,
        market_id -> Binary,
        response -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}
