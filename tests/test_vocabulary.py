import json

from goalcraft.data.vocabulary import load_keywords


def test_text_file_with_comments_and_duplicates(tmp_path):
    path = tmp_path / "tasks.txt"
    path.write_text("Chop a tree  # MineDojo\n\ncollect   dirt\nchop a tree\n# only a comment\n")
    assert load_keywords(path) == ("chop a tree", "collect dirt")


def test_json_list_and_tasks_mapping(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(["Gather Wood", "gather wood", "swim"]))
    assert load_keywords(listed) == ("gather wood", "swim")
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps({"collect_wood": {"instruction": "Collect wood", "paraphrases": ["chop a tree"]},
                                 "eat_cow": {"instruction": "eat a cow"}}))
    assert load_keywords(tasks) == ("collect wood", "chop a tree", "eat cow", "eat a cow")
