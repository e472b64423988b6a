from engine import services


def test_spec_examples_import_and_list(db, actor, spec_examples):
    services.import_workflows(db, actor, spec_examples)
    page = services.list_workflows(db, actor, include_stats=True)
    assert page.total == 4
    assert page.stats.total_workflows == 4
