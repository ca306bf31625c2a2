-- Cone search indexes: a btree on (dec, ra) per position, and the q3c index on object where q3c is installed
-- dbp: after-initdb
--
-- Not part of ALeRCE's catalog, so initdb neither creates them nor records this migration as
-- applied: `dbp migrate` applies it. The (dec, ra) btrees serve dbp's portable $cone path (a dec
-- band, then the ra range on the same index entries), one per table of positions.toml. The q3c
-- index is the one ALeRCE's API searches objects with; it is made only if the q3c extension
-- exists when this runs (if q3c is installed later, run the DO block below again: dbp uses q3c
-- on object as soon as the index exists). object and lsst_dia_object are partitioned: an index
-- made on the parent is made on every partition too.

CREATE INDEX IF NOT EXISTS ix_object_meandec_meanra ON object USING btree (meandec, meanra);
CREATE INDEX IF NOT EXISTS ix_detection_dec_ra ON detection USING btree ("dec", ra);
CREATE INDEX IF NOT EXISTS ix_forced_photometry_dec_ra ON forced_photometry USING btree ("dec", ra);
CREATE INDEX IF NOT EXISTS ix_lsst_dia_object_dec_ra ON lsst_dia_object USING btree ("dec", ra);
CREATE INDEX IF NOT EXISTS ix_allwise_dec_ra ON allwise USING btree ("dec", ra);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'q3c') THEN
        CREATE INDEX IF NOT EXISTS ix_object_q3c ON object (q3c_ang2ipix(meanra, meandec));
    END IF;
END
$$;
