"""Seed 004's sample document, verbatim (formatting included), as its users paste it."""

SEED_004_SAMPLE = """\
{
    "context": {
        "project":
            {
                "id": 1,
                "name": "pr1",
                "workflows": [
                    {
                        "id": 1,
                        "name": "wf1",
                        "tasks": [
                            {
                                "id": 1,
                                "name": "t11",
                                "place": 1,
                                "exec": "parallel",
                                "function": "simple",
                                "params": [
                                    "0"
                                ]
                            },
                            {
                                "id": 2,
                                "name": "t12",
                                "place": 2,
                                "exec": "await",
                                "function": "simple",
                                "params": [
                                    "5"
                                ]
                            }
                        ]
                    },
                    {
                        "id": 2,
                        "name": "wf2",
                        "tasks": [
                            {
                                "id": 1,
                                "name": "t21",
                                "place": 1,
                                "exec": "parallel",
                                "function": "simple",
                                "params": [
                                    "10"
                                ]
                            },
                            {
                                "id": 2,
                                "name": "t22",
                                "place": 2,
                                "exec": "await",
                                "function": "echo",
                                "params": [
                                    "5"
                                ]
                            }
                        ]
                    }
                ]
            }
    }
}
"""
