"""The example requests of the seeds in ../shared/seeds, exactly as written there.

They are acceptance cases: copied character for character (line breaks and all) so that the
tests send what a reader of the seed would paste into GraphiQL.
"""

ASYNC_QUERY = '''mutation
{
asyncQuery(query:"""
query {
useCompany(no: 123456)
{
generalLedgerAccount(first: 5) {
totalCount
items {
accountNo
name
}
}
}
}
""")
{
operationId
status
}
}'''

ASYNC_QUERY_WITH_ARGS = '''mutation ($args: Dictionary)
{
asyncQuery(query:"""
query read($cid : Int!, $pagesize : Int!){
useCompany(no: $cid)
{
generalLedgerAccount(first: $pagesize) {
totalCount
items {
accountNo
name
}
}
}
}
""", args: $args)
{
operationId
status
}
}'''

ASYNC_QUERY_WITH_ARGS_VARIABLES = {
    "args": {
        "cid": 123456,
        "pagesize": 5,
    }
}

FETCH_RESULTS = """query fetch_results($oid : String!)
{
asyncResult(id: $oid)
{
operationId
status
error
data
createdAt
completedAt
}
}"""

ASYNC_REQUESTS = """query
{
asyncRequests
{
operationId
status
}
}"""

# The inner document of ASYNC_QUERY, run synchronously: its JSON is what `data` must parse to.
INNER_QUERY = """
query {
useCompany(no: 123456)
{
generalLedgerAccount(first: 5) {
totalCount
items {
accountNo
name
}
}
}
}
"""

# The seed's own example result: the first five accounts of company 123456.
SEED_RESULT_DATA = (
    '{"data":{"useCompany":{"generalLedgerAccount":{"totalCount":342,"items":['
    '{"accountNo":1000,"name":"Forskning og utvikling"},{"accountNo":1020,"name":"Konsesjoner"},'
    '{"accountNo":1030,"name":"Patenter"},{"accountNo":1040,"name":"Lisenser"},'
    '{"accountNo":1050,"name":"Varemerker"}]}}}}'
)

# ../shared/seeds/hasura-async-actions.txt
HASURA_SEED_MUTATION = """mutation placeOrderRequest($order_input: place_order_input!) {
  place_order(input: $order_input)
}"""

HASURA_SEED_ID = "23b1c256-7aff-4b95-95bd-68220d9f93f2"

HASURA_SEED_SUBSCRIPTION = """subscription getPlaceOrderResponse {
  place_order (id: "23b1c256-7aff-4b95-95bd-68220d9f93f2") {
    output
    errors
  }
}"""
