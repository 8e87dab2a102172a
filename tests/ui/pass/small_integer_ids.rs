// i32 and i16 ids are database identities, or the application's with id(assigned); so are i64 ones.
use reposmith::{ColumnType, Entity, IdStrategy, Repository};

#[derive(Repository)]
struct Seat {
    #[repo(id)]
    id: i32,
    label: String,
}

#[derive(Repository)]
struct Flag {
    #[repo(id)]
    id: i16,
}

#[derive(Repository)]
struct Code {
    #[repo(id(assigned))]
    code: i32,
}

#[derive(Repository)]
struct Level {
    #[repo(id(assigned))]
    level: i16,
}

#[derive(Repository)]
struct Order {
    #[repo(id(assigned))]
    number: i64,
}

fn main() {
    assert_eq!(Seat::SCHEMA.id_strategy, IdStrategy::Identity);
    assert_eq!(Seat::SCHEMA.id_column().ty, ColumnType::Int);
    assert_eq!(Flag::SCHEMA.id_strategy, IdStrategy::Identity);
    assert_eq!(Flag::SCHEMA.id_column().ty, ColumnType::SmallInt);
    assert_eq!(Code::SCHEMA.id_strategy, IdStrategy::Assigned);
    assert_eq!(Level::SCHEMA.id_strategy, IdStrategy::Assigned);
    assert_eq!(Order::SCHEMA.id_strategy, IdStrategy::Assigned);
    let seat = Seat {
        id: 7,
        label: String::new(),
    };
    let _: &i32 = seat.id();
    let _: i16 = Level { level: -3 }.level;
}
