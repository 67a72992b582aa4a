DROP TRIGGER markets_deleted ON markets;
DROP TRIGGER markets_changed_version ON markets;
DROP FUNCTION markets_record_change();
DROP TABLE market_changes;
