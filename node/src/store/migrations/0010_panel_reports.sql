-- What registering each panel file did (records read, split, excluded per reason), as JSON.
ALTER TABLE panel_chromosomes ADD COLUMN report TEXT;
