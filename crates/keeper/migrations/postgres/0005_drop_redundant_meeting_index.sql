-- meetings_connection_start_time (connection_id, start_time) answers every lookup
-- by connection_id alone, so meetings_connection only cost each index write a
-- sixth b-tree to update (Zoom webhook ingress writes one row per event).
DROP INDEX IF EXISTS meetings_connection;
