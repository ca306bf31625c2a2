-- Cone search indexes: a btree on (dec, ra) per position, and q3c indexes where q3c is installed
-- dbp: after-initdb
--
-- Not part of the ALeRCE catalog, so initdb does not create them (nor record this migration
-- as applied): `dbp migrate` applies it. The (dec, ra) btrees serve the portable $cone path
-- (a dec band, then the ra range on the same index entries). The q3c indexes are made only
-- if the q3c extension exists when this runs; if q3c is installed later, run the DO block
-- below again (dbp then uses q3c as soon as the index exists).

CREATE INDEX IF NOT EXISTS ix_object_meandec_meanra ON object USING btree (meandec, meanra);
CREATE INDEX IF NOT EXISTS ix_detection_dec_ra ON detection USING btree ("dec", ra);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'q3c') THEN
        CREATE INDEX IF NOT EXISTS ix_object_q3c ON object (q3c_ang2ipix(meanra, meandec));
        CREATE INDEX IF NOT EXISTS ix_detection_q3c ON detection (q3c_ang2ipix(ra, "dec"));
    END IF;
END
$$;
