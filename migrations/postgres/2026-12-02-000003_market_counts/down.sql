DROP TRIGGER markets_count_truncates ON markets;
DROP TRIGGER markets_count_status_changes ON markets;
DROP TRIGGER markets_count_deletes ON markets;
DROP TRIGGER markets_count_inserts ON markets;
DROP FUNCTION markets_count_truncate();
DROP FUNCTION markets_count_status_change();
DROP FUNCTION markets_count_rows();
DROP FUNCTION market_counts_add(text[], bigint[]);
DROP TABLE market_counts;
