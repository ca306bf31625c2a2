-- Surveys and their photometric bands.
-- sid_lut names each survey stream (sid) and the telescope it comes from (tid): ZTF (sid 0,
-- tid 0), LSST DIA objects (sid 1, tid 1) and LSST solar-system objects (sid 2, tid 1); object,
-- detection and the other tables that all surveys share carry the sid of each row.
-- band lists each survey's bands: band is the survey's own number, band_name its letter
-- (g, r, i, ...) and "order" the order in which ALeRCE shows them.

CREATE TABLE sid_lut (
    sid           SMALLINT NOT NULL,
    tid           SMALLINT,
    survey_name   VARCHAR NOT NULL,
    created_date  DATE DEFAULT now(),
    CONSTRAINT pk_sid_lut_sid PRIMARY KEY (sid)
);

CREATE TABLE band (
    sid           SMALLINT NOT NULL,
    tid           SMALLINT NOT NULL,
    band          SMALLINT NOT NULL,
    band_name     VARCHAR NOT NULL,
    "order"       INTEGER,
    created_date  DATE DEFAULT now(),
    CONSTRAINT pk_band_sid_tid_band PRIMARY KEY (sid, tid, band)
);
