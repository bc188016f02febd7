"""The local runtime: the whole product on one machine, with no AWS account.

The same ``template.yaml``, state machine and handler code run against moto's AWS services (served on
127.0.0.1), a local Bedrock batch service answered by a local model, and workers that run each function in its
own process. Modules:

- ``models``: the models behind the local Bedrock (an offline classifier; any OpenAI-compatible endpoint);
- ``bedrock_service``: Bedrock batch jobs and on-demand calls over HTTP, with injectable faults;
- ``runtime``: moto, the local deploy of the template, Lambda workers, EventBridge delivery, scaled time.
"""
