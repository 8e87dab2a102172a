DROP TABLE testkit_items;
