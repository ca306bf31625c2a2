-- rollback of 0001_cone_search_indexes

DROP INDEX IF EXISTS ix_object_q3c;
DROP INDEX IF EXISTS ix_allwise_dec_ra;
DROP INDEX IF EXISTS ix_lsst_dia_object_dec_ra;
DROP INDEX IF EXISTS ix_forced_photometry_dec_ra;
DROP INDEX IF EXISTS ix_detection_dec_ra;
DROP INDEX IF EXISTS ix_object_meandec_meanra;
