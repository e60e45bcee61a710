-- Workers say they are alive and making progress, so that /ready on any API replica can tell when no
-- worker is sending (dead, stuck, or never started) while messages pile up. One row per worker
-- process; the times are the database's own, so clocks on different machines do not matter.

CREATE TABLE worker_heartbeats (
    name       text PRIMARY KEY CHECK (length(name) <= 200),
    host       text NOT NULL CHECK (length(host) <= 200),
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    beat_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worker_heartbeats_beat ON worker_heartbeats (beat_at);
